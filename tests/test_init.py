"""`datakit data init` in a project folder, as a user runs it."""
import datetime
import json
import re
import subprocess

from helpers import BUCKET, assert_clean_error, output


def test_init_without_global_config_writes_defaults_and_says_how_to_set_a_bucket(project, home):
    result = project.run("data", "init", timeout=30)

    assert result.returncode == 0, output(result)
    assert project.data.is_dir()
    assert project.config() == {"aws_user_profile": "default", "s3_bucket": "", "s3_path": project.name}
    assert result.stdout.splitlines()[-1] == (
        'Next: no S3 bucket is set yet; put "s3_bucket": "NAME" in config/datakit-data.json '
        "(`datakit config set datakit-data s3_bucket NAME` sets only the default for projects created later; "
        "`datakit data init --bucket NAME` sets it when a project is created)."
    )
    # datakit-core's convention: the plugin's global defaults are written on first use.
    assert json.loads(home.global_config_path.read_text())["s3_bucket"] == ""


def test_init_takes_profile_bucket_and_endpoint_from_global_config_in_datakit_home(project, home):
    home.add_profile("other_profile")
    home.write_global_config({
        "aws_user_profile": "other_profile", "s3_bucket": BUCKET, "s3_endpoint_url": home.endpoint_url,
    })

    result = project.run("data", "init")

    assert result.returncode == 0, output(result)
    config = project.config()
    assert re.fullmatch(r"[0-9a-f]{32}", config.pop("project_id"))  # the name it claimed in the bucket
    assert config == {
        "aws_user_profile": "other_profile",
        "s3_bucket": BUCKET,
        "s3_path": project.name,
        "s3_endpoint_url": home.endpoint_url,
    }
    # The "is this s3_path in use" check reached the test server with that profile.
    assert "no S3 bucket" not in result.stdout and "Could not check" not in result.stdout


def test_prefix_and_suffix_build_s3_path_once_and_stay_out_of_project_config(project, home):
    home.write_global_config({
        "s3_bucket": BUCKET, "s3_path_prefix": "/projects/2017/", "s3_path_suffix": "data/",
        "s3_endpoint_url": home.endpoint_url,
    })

    result = project.run("data", "init")

    assert result.returncode == 0, output(result)
    assert "Could not check" not in result.stdout
    config = project.config()
    assert config["s3_path"] == f"projects/2017/{project.name}/data"
    assert "s3_path_prefix" not in config and "s3_path_suffix" not in config


def test_placeholders_in_global_values_expand_at_init(project, home, bucket):
    try:
        bucket.client.create_bucket(Bucket="team-ana")
    except bucket.client.exceptions.BucketAlreadyOwnedByYou:
        pass
    home.write_global_config({
        "s3_bucket": "team-$USERNAME",
        "s3_path_prefix": "projects/$YEAR/$MONTH/$DAY",
        "s3_path_suffix": "$PROJECTNAME-data",
        "s3_endpoint_url": home.endpoint_url,
    })
    home.env["USER"] = home.env["LOGNAME"] = "ana"

    result = project.run("data", "init")

    assert result.returncode == 0, output(result)
    today = datetime.date.today()
    config = project.config()
    assert config["s3_path"] == (
        f"projects/{today:%Y}/{today:%m}/{today:%d}/{project.name}/{project.name}-data"
    )
    assert config["s3_bucket"] == "team-ana"
    assert "Could not check" not in result.stdout


def test_a_bucket_the_server_says_does_not_exist_is_refused_and_nothing_is_written(project, home):
    for joining in ((), ("--existing",)):
        result = project.run("data", "init", "--bucket", "no-such-bucket", "--endpoint-url", home.endpoint_url,
                             *joining)

        text = assert_clean_error(result)
        assert 'Bucket "no-such-bucket" does not exist on' in text and "Nothing was written." in text
        assert not project.config_path.exists() and not project.data.exists()
        assert not (project.root / ".gitignore").exists()


def test_init_says_how_to_untrack_data_that_git_tracks(project, home, bucket):
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=project.root, check=True)
    project.write("old.csv", "tracked before datakit")
    subprocess.run([*git, "add", "data"], cwd=project.root, check=True)
    subprocess.run([*git, "commit", "-qm", "data in git"], cwd=project.root, check=True)

    result = project.run("data", "init", "--bucket", BUCKET, "--endpoint-url", home.endpoint_url)

    assert result.returncode == 0, output(result)
    assert "data/ is tracked by git (1 file)" in result.stdout and "`git rm -r --cached data`" in result.stdout
    subprocess.run(["git", "rm", "-rq", "--cached", "data"], cwd=project.root, check=True)
    again = project.run("data", "init")
    assert "tracked by git" not in again.stdout


def test_options_set_bucket_profile_path_and_endpoint_without_prompting(project, home):
    home.write_global_config({"s3_bucket": "global-bucket", "aws_user_profile": "global"})

    result = project.run(
        "data", "init", "--bucket", "cli-bucket", "--profile", "analyst",
        "--path", "/desk/2026/story/", "--endpoint-url", "http://127.0.0.1:9",
        timeout=30,
    )

    assert result.returncode == 0, output(result)
    assert project.config() == {
        "aws_user_profile": "analyst",
        "s3_bucket": "cli-bucket",
        "s3_path": "desk/2026/story",
        "s3_endpoint_url": "http://127.0.0.1:9",
    }
    assert "Could not check whether s3://cli-bucket/desk/2026/story/ is already in use" in result.stdout


def test_existing_project_config_is_never_overwritten(project):
    project.config_path.parent.mkdir(parents=True)
    original = '{"s3_bucket": "theirs", "s3_path": "keep/me", "aws_user_profile": "x"}\n'
    project.config_path.write_text(original)

    result = project.run("data", "init", "--bucket", "mine")

    assert result.returncode == 0, output(result)
    assert project.config_path.read_text() == original
    assert "already exists" in result.stdout and "--bucket" in result.stdout


def test_gitignore_is_created_then_never_duplicated(project):
    assert project.run("data", "init").returncode == 0
    assert (project.root / ".gitignore").read_text() == "data/\n.datakit-data/\n"

    project.config_path.unlink()
    assert project.run("data", "init").returncode == 0
    assert (project.root / ".gitignore").read_text() == "data/\n.datakit-data/\n"


def test_gitignore_entry_is_appended_to_existing_file_and_equivalents_are_respected(project):
    (project.root / ".gitignore").write_text("*.pyc\n.venv")  # no final newline

    result = project.run("data", "init")

    assert result.returncode == 0, output(result)
    assert (project.root / ".gitignore").read_text() == "*.pyc\n.venv\ndata/\n.datakit-data/\n"

    other = project.root.parent / f"{project.name}-other"  # beside it: init refuses a project inside one
    other.mkdir()
    (other / ".gitignore").write_text("/data/\n.datakit-data\n")
    from helpers import Project

    assert Project(other, project.home).run("data", "init").returncode == 0
    assert (other / ".gitignore").read_text() == "/data/\n.datakit-data\n"


def test_malformed_global_config_names_file_and_line_and_writes_nothing(project, home):
    home.write_global_config('{\n  "s3_bucket": "x",\n  "aws_user_profile": \n}\n')

    result = project.run("data", "init")

    text = assert_clean_error(result)
    assert str(home.global_config_path) in text and "line 4" in text
    assert not project.config_path.exists()
    # The broken file is left for the user to fix, not replaced by defaults.
    assert home.global_config_path.read_text().startswith('{\n  "s3_bucket": "x"')


def test_invalid_bucket_option_is_refused_before_anything_is_written(project):
    result = project.run("data", "init", "--bucket", "s3://my-bucket")

    text = assert_clean_error(result)
    assert "--bucket" in text and 'Drop the "s3://"' in text
    assert not project.config_path.exists()


def test_init_never_prints_credentials_inside_the_endpoint_url(project):
    result = project.run("data", "init", "--bucket", BUCKET, "--endpoint-url", "http://ana:hunter2@127.0.0.1:9")

    assert result.returncode == 0, output(result)
    assert "hunter2" not in output(result) and "http://***@127.0.0.1:9" in result.stdout
    assert project.config()["s3_endpoint_url"] == "http://ana:hunter2@127.0.0.1:9"
