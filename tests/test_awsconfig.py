"""awsconfig.py: the user's AWS config, and the multipart part sizes."""
import pytest

from datakit_data import awsconfig


def with_s3_setting(tmp_path, text, section, value):
    path = tmp_path / "config"
    path.write_text(text)
    awsconfig.set_s3_value(str(path), section, "max_concurrent_requests", value)
    return path.read_text()


def test_s3_setting_is_added_to_an_empty_config(tmp_path):
    assert with_s3_setting(tmp_path, "", "default", "64") == "[default]\ns3 =\n    max_concurrent_requests = 64\n"


def test_s3_setting_keeps_every_other_line_of_the_users_config(tmp_path):
    text = (
        "# my settings\n[default]\nregion = eu-west-1\ns3 =\n    multipart_chunksize = 16MB\n"
        "    max_concurrent_requests = 4\n\n[profile team]\nregion = us-east-1\n"
    )
    got = with_s3_setting(tmp_path, text, "default", "64")
    assert got == text.replace("max_concurrent_requests = 4", "max_concurrent_requests = 64")

    team = with_s3_setting(tmp_path, text, "profile team", "32")
    assert team == text + "s3 =\n    max_concurrent_requests = 32\n"


def test_s3_setting_joins_an_existing_nested_block(tmp_path):
    text = "[profile a]\ns3 =\n    multipart_threshold = 64MB\nregion = x\n"
    assert with_s3_setting(tmp_path, text, "profile a", "20") == (
        "[profile a]\ns3 =\n    multipart_threshold = 64MB\n    max_concurrent_requests = 20\nregion = x\n"
    )


def test_section_names():
    assert awsconfig.section_name(None) == "default"
    assert awsconfig.section_name("default") == "default"
    assert awsconfig.section_name("team") == "profile team"


@pytest.mark.parametrize("file_size, chunk, expected", [
    (9 * 2**20, 8 * 2**20, 8 * 2**20),
    (9 * 2**20, 1 * 2**20, 5 * 2**20),  # below S3's 5 MiB minimum
    (100_000 * 2**20, 8 * 2**20, 16 * 2**20),  # 12,500 parts of 8 MiB: too many
    (10_000 * 8 * 2**20, 8 * 2**20, 8 * 2**20),  # exactly 10,000 parts
])
def test_part_size_follows_s3_limits(file_size, chunk, expected):
    assert awsconfig.part_size(file_size, chunk) == expected
