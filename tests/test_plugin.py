"""The plugin as datakit sees it: help, entry points and `datakit config`."""
from conftest import BUCKET, output


def test_datakit_help_lists_the_data_commands(project):
    result = project.run("--help")

    assert result.returncode == 0
    for name in ("data init", "data push", "data pull"):
        assert name in result.stdout


def test_push_and_pull_help_explain_flag_words(project):
    for command in ("push", "pull"):
        result = project.run("data", command, "--help")
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        assert "without dashes" in text and "delete" in text and "dryrun" in text
        assert f"datakit data {command} delete dryrun" in text


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
