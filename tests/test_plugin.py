"""The plugin as datakit sees it: help, entry points and `datakit config`."""
import configparser
from pathlib import Path

import pytest

from helpers import BUCKET, output


def plugin_commands() -> list[str]:
    """The commands setup.cfg declares ("data init", ...), so a new one is tested unasked."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(Path(__file__).parents[1] / "setup.cfg", encoding="utf-8")
    entries = cfg["options.entry_points"]["datakit.plugins"]
    return [line.split("=", 1)[0].strip() for line in entries.splitlines() if line.strip()]


COMMANDS = plugin_commands()


def test_datakit_help_lists_the_data_commands(project):
    result = project.run("--help")

    assert result.returncode == 0
    assert "data init" in COMMANDS and "data push" in COMMANDS and "data pull" in COMMANDS
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_its_help(project, name):
    result = project.run(*name.split(), "--help")

    assert result.returncode == 0, output(result)
    assert result.stdout.startswith(f"usage: datakit {name} "), result.stdout
    assert result.stdout.rstrip().endswith("This command is provided by the datakit-data plugin."), result.stdout


def test_push_and_pull_help_explain_flag_words(project):
    for command in ("push", "pull"):
        result = project.run("data", command, "--help")
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        assert "without dashes" in text and "delete" in text and "dryrun" in text
        assert f"datakit data {command} dryrun" in text and f"datakit data {command} delete" in text


def test_init_help_names_its_options(project):
    result = project.run("data", "init", "--help")

    assert result.returncode == 0
    for option in ("--bucket", "--profile", "--path", "--endpoint-url"):
        assert option in result.stdout


def test_config_list_shows_this_plugins_settings(project, home):
    home.write_global_config({"s3_bucket": BUCKET, "aws_user_profile": "default"})

    result = project.run("config", "list")

    assert result.returncode == 0, output(result)
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert result.stdout.splitlines()[0] == "datakit-data"
    assert rows == {
        "aws_user_profile": ["[set]", "default"],
        "s3_bucket": ["[set]", BUCKET],
        "s3_path_prefix": ["[unset]"],
        "s3_path_suffix": ["[unset]"],
        "s3_endpoint_url": ["[unset]"],
        "max_concurrent_requests": ["[unset]"],
        "exclude": ["[unset]"],
        "lock_file": ["[unset]"],
    }


def test_config_set_exclude_leaves_that_pattern_out_of_every_push(project, home, bucket):
    result = project.run("config", "set", "datakit-data", "exclude", "*.tmp")
    assert result.returncode == 0, output(result)
    project.configure()
    project.write("a.csv", "a")
    project.write("d/b.tmp", "b")

    pushed = project.run("data", "push")

    assert pushed.returncode == 0, output(pushed)
    assert bucket.objects(project.name) == {"a.csv": b"a"}


def test_config_verify_checks_the_bucket_answers(project, home):
    home.write_global_config({"s3_bucket": BUCKET, "s3_endpoint_url": home.endpoint_url})

    result = project.run("config", "verify", "datakit-data")

    assert result.returncode == 0, output(result)
    assert "s3_bucket: OK" in result.stdout

    home.write_global_config({"s3_bucket": "not-a-real-bucket", "s3_endpoint_url": home.endpoint_url})
    result = project.run("config", "verify", "datakit-data")

    assert result.returncode == 1, output(result)
    assert "s3_bucket: FAILED" in result.stdout and '"not-a-real-bucket" does not exist' in result.stdout


def test_config_set_writes_the_global_default_used_by_init(project, home):
    home.write_global_config({"s3_endpoint_url": home.endpoint_url})
    assert project.run("config", "set", "datakit-data", "s3_bucket", BUCKET).returncode == 0

    result = project.run("data", "init")

    assert result.returncode == 0, output(result)
    assert project.config()["s3_bucket"] == BUCKET
    assert "Could not check" not in result.stdout
