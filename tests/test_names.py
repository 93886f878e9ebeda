"""names.py: keys that can never be local paths."""
import pytest


@pytest.mark.parametrize("name, refused", [
    ("a" * 255, False),  # the AWS CLI cuts ASCII names to 246 characters: fine
    ("é" * 123, False),  # 246 bytes + 9
    ("é" * 124, True),  # 248 bytes + 9 > 255
    ("dir/" + "é" * 124, True),
    ("é" * 124 + "/x", False),  # a folder name: no temporary name is made for it
])
def test_names_the_aws_cli_cannot_download_are_refused(name, refused):
    from datakit_data.names import key_problem

    assert (key_problem(name) is not None) == refused
