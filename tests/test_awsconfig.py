"""awsconfig.py: the user's AWS config with the plugin added, and the multipart part sizes."""
import pytest

from datakit_data import awsconfig


def plugin_copy(tmp_path, text):
    """The config copy that loads the plugin, from a user's config of this text (None: no file)."""
    user = tmp_path / "user-config"
    if text is not None:
        user.write_text(text)
    before = user.read_bytes() if text is not None else None
    copy, users_path = awsconfig.plugin_config(str(tmp_path / "copy"), "/stage/aws-plugin", "dk_plugin",
                                               {"AWS_CONFIG_FILE": str(user)})
    assert (user.read_bytes() if text is not None else None) == before  # never written
    assert not user.exists() or text is not None
    return (tmp_path / "copy").read_text(), users_path


def test_the_plugin_is_added_to_a_config_without_plugins_and_to_none(tmp_path):
    text = "# mine\n[default]\nregion = eu-west-1\ns3 =\n    max_concurrent_requests = 4\n"
    copy, users_path = plugin_copy(tmp_path, text)
    assert copy == text + "\n[plugins]\ncli_legacy_plugin_path = /stage/aws-plugin\ndk_plugin = dk_plugin\n"
    assert users_path is None
    (tmp_path / "none").mkdir()
    assert plugin_copy(tmp_path / "none", None)[0] == (
        "\n[plugins]\ncli_legacy_plugin_path = /stage/aws-plugin\ndk_plugin = dk_plugin\n")


def test_the_plugin_comes_first_among_the_users_own_plugins_whose_folder_is_handed_on(tmp_path):
    text = ("[plugins]\nmine = my_plugin\ncli_legacy_plugin_path = /home/me/plugins\n\n"
            "[profile team]\nregion = us-east-1\n")
    copy, users_path = plugin_copy(tmp_path, text)
    assert copy == ("[plugins]\ncli_legacy_plugin_path = /stage/aws-plugin\ndk_plugin = dk_plugin\n"
                    "mine = my_plugin\n\n[profile team]\nregion = us-east-1\n")
    assert users_path == "/home/me/plugins"


def test_plugins_the_cli_would_not_load_without_a_folder_are_left_out_of_the_copy(tmp_path):
    # AWS CLI v2 loads [plugins] entries only where cli_legacy_plugin_path names their folder.
    copy, users_path = plugin_copy(tmp_path, "[plugins]\n# mine\nendpoint = awscli_plugin_endpoint\n")
    assert copy == "[plugins]\ncli_legacy_plugin_path = /stage/aws-plugin\ndk_plugin = dk_plugin\n# mine\n"
    assert users_path is None


@pytest.mark.parametrize("text", [
    "[default]\nregion = x\n[default]\nregion = y\n",  # botocore refuses it: so will the CLI
    "[plugins]\ncli_legacy_plugin_path = /x\ndk_plugin = theirs\n",  # our name is taken
    "[plugins]\nx = y\nx = z\n",  # a key twice
])
def test_a_config_the_plugin_cannot_be_added_to_exactly_is_left_alone(tmp_path, text):
    with pytest.raises(ValueError):
        plugin_copy(tmp_path, text)


@pytest.mark.parametrize("file_size, chunk, expected", [
    (9 * 2**20, 8 * 2**20, 8 * 2**20),
    (9 * 2**20, 1 * 2**20, 5 * 2**20),  # below S3's 5 MiB minimum
    (100_000 * 2**20, 8 * 2**20, 16 * 2**20),  # 12,500 parts of 8 MiB: too many
    (10_000 * 8 * 2**20, 8 * 2**20, 8 * 2**20),  # exactly 10,000 parts
])
def test_part_size_follows_s3_limits(file_size, chunk, expected):
    assert awsconfig.part_size(file_size, chunk) == expected
