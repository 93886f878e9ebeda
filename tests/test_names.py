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


def test_the_shortcut_for_plain_names_agrees_with_the_full_check():
    """key_problem answers most keys with one match; on every path it must say what the
    full check says."""
    import random

    from datakit_data.names import DOWNLOAD_SUFFIX, NAME_MAX, full_key_problem, key_problem

    rng = random.Random(20)
    alphabet = "aZ09_-.+=,@ ()/\\\x1b\u00e9~%&[*?"
    paths = ["", ".", "..", "a/.", "a/../b", ".hidden/x", "x" * (NAME_MAX - DOWNLOAD_SUFFIX),
             "x" * (NAME_MAX - DOWNLOAD_SUFFIX + 1), "d/" + "y" * NAME_MAX]
    paths += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(20_000)]
    for path in paths:
        assert key_problem(path) == full_key_problem(path), path
    assert sum(key_problem(p) is None for p in paths) > 1000  # both kinds were tried
