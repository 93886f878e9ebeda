"""`datakit data push` and `datakit data pull` against the real S3 server."""
import os
import re
import signal
import stat
import sys
import tempfile

import pytest

from helpers import AWS_V2, BUCKET, assert_clean_error, ok, output, wait_until


def test_push_then_a_colleague_pulls_the_same_bytes(project, colleague, bucket):
    assert project.run("data", "init", "--bucket", BUCKET, "--endpoint-url", project.home.endpoint_url).returncode == 0
    project.write("survey.csv", "id,answer\n1,yes\n")
    project.write("raw/2017/deep/nested.bin", bytes(range(256)) * 40)

    pushed = project.run("data", "push")

    assert pushed.returncode == 0, output(pushed)
    assert bucket.objects(project.name) == project.files()

    colleague.clone_config_of(project)
    pulled = colleague.run("data", "pull")

    assert pulled.returncode == 0, output(pulled)
    assert colleague.files() == project.files()


def test_command_is_logged_once_and_default_profile_is_not_passed(project):
    project.configure()
    project.write("a.txt", "a")

    quiet = ok(project.run("data", "push"))
    project.write("a.txt", "b")
    result = project.run("data", "push", "debug")  # the AWS CLI's command line is for `debug`

    assert "Running: " not in output(quiet)
    assert result.returncode == 0, output(result)
    running = [line for line in output(result).splitlines() if line.startswith("Running: ")]
    assert len(running) == 1
    # Who pushed travels as metadata (the login name here: no git user.name).
    assert re.fullmatch(
        rf"Running: aws s3 sync data/ s3://{BUCKET}/{project.name}/ "
        rf"--debug --metadata '{{\"pushed-by\": \"[^\"]+\"}}' "
        rf"--cli-connect-timeout 5 --cli-read-timeout 15 --endpoint-url {re.escape(project.home.endpoint_url)}",
        running[0],
    ), running


def test_named_profile_is_passed_and_used(project, bucket):
    project.home.add_profile("newsroom")
    project.configure(aws_user_profile="newsroom")
    project.write("a.txt", "from a profile")
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}

    result = project.run("data", "push", "debug", env=env)

    assert result.returncode == 0, output(result)
    assert "--profile newsroom" in result.stderr
    assert bucket.objects(project.name) == {"a.txt": b"from a profile"}


def test_missing_profile_is_named(project, bucket):
    project.configure(aws_user_profile="nobody-here")
    project.write("a.txt", "a")

    result = project.run("data", "push")

    text = assert_clean_error(result)
    assert '"nobody-here"' in text and "~/.aws/credentials" in text
    assert bucket.objects(project.name) == {}


def test_endpoint_from_global_config_applies_when_project_has_none(project, home, bucket):
    home.write_global_config({"s3_endpoint_url": home.endpoint_url})
    project.configure(s3_endpoint_url=None)
    project.write("g.txt", "global endpoint")

    result = project.run("data", "push")

    assert result.returncode == 0, output(result)
    assert bucket.objects(project.name) == {"g.txt": b"global endpoint"}


def test_aws_endpoint_url_environment_variable_keeps_working(project, home, bucket):
    project.configure(s3_endpoint_url=None)
    project.write("e.txt", "env endpoint")

    result = project.run("data", "push", env={"AWS_ENDPOINT_URL": home.endpoint_url})

    assert result.returncode == 0, output(result)
    assert bucket.objects(project.name) == {"e.txt": b"env endpoint"}


def test_dryrun_transfers_nothing(project, bucket):
    project.configure()
    project.write("a.txt", "a")

    result = project.run("data", "push", "dryrun")

    assert result.returncode == 0, output(result)
    assert "(dryrun) upload: data/a.txt" in result.stdout
    assert bucket.objects(project.name) == {}


def test_push_delete_removes_objects_deleted_locally(project, bucket):
    project.configure()
    project.write("keep.txt", "keep")
    gone = project.write("gone.txt", "gone")
    assert project.run("data", "push").returncode == 0
    gone.unlink()

    assert project.run("data", "push").returncode == 0
    assert set(bucket.objects(project.name)) == {"keep.txt", "gone.txt"}  # no delete: kept

    result = project.run("data", "push", "delete", "dryrun")
    assert result.returncode == 0 and "(dryrun) delete:" in result.stdout
    assert set(bucket.objects(project.name)) == {"keep.txt", "gone.txt"}

    assert project.run("data", "push", "delete").returncode == 0
    assert bucket.objects(project.name) == {"keep.txt": b"keep"}


def test_pull_delete_removes_local_files_deleted_remotely_and_keeps_unpushed_ones(project, bucket):
    project.configure()
    bucket.put(f"{project.name}/remote.txt", b"remote")
    bucket.put(f"{project.name}/doomed.txt", b"doomed")
    assert project.run("data", "pull").returncode == 0
    bucket.delete(f"{project.name}/doomed.txt")
    project.write("local-only.txt", "local")

    result = project.run("data", "pull", "delete")

    assert result.returncode == 0, output(result)
    assert project.files() == {"remote.txt": b"remote", "local-only.txt": b"local"}
    assert "kept: data/local-only.txt" in result.stderr


def test_pull_creates_data_folder(project, bucket):
    project.configure()
    bucket.put(f"{project.name}/x/y.txt", b"deep")

    result = project.run("data", "pull")

    assert result.returncode == 0, output(result)
    assert project.files() == {"x/y.txt": b"deep"}


def test_value_option_and_unknown_words_are_refused_before_anything_runs(project, bucket):
    project.configure()
    project.write("a.txt", "a")

    text = assert_clean_error(project.run("data", "push", "exclude"))
    assert '"exclude" takes a value' in text and "dryrun" in text and "Running:" not in text

    text = assert_clean_error(project.run("data", "push", "dryrn"))
    assert '"dryrn"' in text and 'Did you mean "dryrun"?' in text and "Accepted:" in text

    text = assert_clean_error(project.run("data", "push", "--", "--delete"))
    assert "without dashes" in text and "datakit data push delete" in text

    text = assert_clean_error(project.run("data", "push", "follow-symlinks", "no-follow-symlinks"))
    assert "contradict" in text
    assert bucket.objects(project.name) == {}


def test_delete_with_empty_s3_path_is_refused(project, bucket):
    project.configure(s3_path="")
    project.write("a.txt", "a")

    text = assert_clean_error(project.run("data", "push", "delete"))

    assert "whole bucket" in text and "s3_path" in text and "Running:" not in text


def test_missing_bucket_is_named(project):
    project.configure(s3_bucket="no-such-bucket-here")
    project.write("a.txt", "a")

    text = assert_clean_error(project.run("data", "push"))

    assert '"no-such-bucket-here" does not exist' in text


def test_skipped_file_exits_non_zero_names_it_and_the_rest_goes_through(project, bucket):
    project.configure()
    project.write("good.txt", "good")
    os.symlink(project.root / "nowhere", project.data / "dangling.csv")

    result = project.run("data", "push")

    text = assert_clean_error(result, code=2)
    assert "data/dangling.csv" in text and "skipped" in text
    assert bucket.objects(project.name) == {"good.txt": b"good"}


def test_missing_project_config_points_to_init(project):
    text = assert_clean_error(project.run("data", "push"))
    assert "config/datakit-data.json" in text and "datakit data init" in text

    text = assert_clean_error(project.run("data", "pull"))
    assert "datakit data init" in text
    assert not project.data.exists()


def test_empty_bucket_says_how_to_set_it(project):
    project.configure(s3_bucket="")
    text = assert_clean_error(project.run("data", "pull"))
    assert "No S3 bucket" in text and '"s3_bucket": "NAME" in config/datakit-data.json' in text
    # The default is named as such: setting it does not fix this project.
    assert "sets only the default for projects created later" in text


def test_malformed_project_config_names_file_and_line(project):
    project.config_path.parent.mkdir(parents=True)
    project.config_path.write_text('{\n  "s3_bucket": "x",\n  "s3_path": "y",\n}\n')

    text = assert_clean_error(project.run("data", "push"))

    assert "config/datakit-data.json" in text and "line 4" in text


def test_push_without_data_folder_says_so(project):
    project.configure()

    text = assert_clean_error(project.run("data", "push"))

    assert "No data/ folder" in text


def test_another_aws_executable_can_be_named(project, tmp_path, bucket):
    marker = tmp_path / "called"
    wrapper = tmp_path / "my-aws"
    wrapper.write_text(f"#!/bin/sh\necho called > {marker}\nexec {sys.executable} -m awscli \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    project.configure()
    project.write("a.txt", "via wrapper")

    result = project.run("data", "push", env={"DATAKIT_DATA_AWS": str(wrapper)})

    assert result.returncode == 0, output(result)
    assert marker.exists()
    assert bucket.objects(project.name) == {"a.txt": b"via wrapper"}

    project.write("b.txt", "needs a transfer")
    text = assert_clean_error(project.run("data", "push", env={"DATAKIT_DATA_AWS": str(tmp_path / "nope")}))
    assert "Cannot start the AWS CLI" in text and "DATAKIT_DATA_AWS" in text


def test_credentials_in_endpoint_url_are_never_printed_nor_sent(project, bucket, outside):
    endpoint = project.home.endpoint_url.replace("http://", "http://analyst:hunter2secret@")
    project.configure(s3_endpoint_url=endpoint)
    project.write("a.txt", "a")
    proxied = len(outside.attempts)

    result = project.run("data", "push", "debug")  # the AWS CLI's own debug log too

    assert result.returncode == 0, output(result)
    assert "hunter2secret" not in output(result)
    assert f"--endpoint-url {project.home.endpoint_url}" in output(result)
    assert bucket.objects(project.name) == {"a.txt": b"a"}
    # Sent with credentials, the URL would have bypassed NO_PROXY and reached the proxy.
    assert outside.attempts[proxied:] == []


def test_unknown_key_warns_with_did_you_mean_and_the_run_goes_on(project, bucket):
    project.configure(s3_buket="typo")
    project.write("a.txt", "a")

    result = project.run("data", "push")

    assert result.returncode == 0, output(result)
    assert 'unknown key "s3_buket"' in result.stderr and 'Did you mean "s3_bucket"?' in result.stderr
    assert bucket.objects(project.name) == {"a.txt": b"a"}


def test_ctrl_c_stops_push_with_130_and_a_rerun_finishes(project, bucket, proxy):
    project.configure(s3_endpoint_url=proxy.endpoint_url)
    for i in range(1000):
        project.write(f"batch/{i:04d}.csv", f"row,{i}\n" * 100)
    # About 20 uploads reach the server, then the rest wait at the proxy: the push
    # is certainly mid-upload when Ctrl-C comes, however slow this machine is.
    proxy.hold_after(40_000)
    with project.start("data", "push") as proc:
        wait_until(lambda: bucket.keys(project.name), "a first object on S3")
        proc.signal(signal.SIGINT)  # what a terminal does on Ctrl-C: the whole group
        # Held until the push has ended: no upload can land after Ctrl-C, however slowly
        # this machine lets the AWS CLI stop (released first, a loaded machine let all 1000 through).
        result = proc.finish(timeout=60)
    proxy.release()

    text = assert_clean_error(result, code=130)
    assert "Push interrupted; files already transferred are complete." in text
    assert "Run `datakit data push` again to finish." in text
    assert 0 < len(bucket.keys(project.name)) < 1000

    again = project.run("data", "push")
    assert again.returncode == 0, output(again)
    assert bucket.objects(project.name) == project.files()


def test_max_concurrent_requests_sets_how_many_connections_the_push_opens(project, colleague, tmp_path, bucket, s3):
    from s3proxy import FaultProxy

    peaks = {}
    for checkout, limit in ((project, 2), (colleague, 24)):
        with FaultProxy(s3.ports["s3.port"], delay=0.02) as slow:
            checkout.configure(s3_endpoint_url=slow.endpoint_url, max_concurrent_requests=limit,
                               s3_path=f"{project.name}-{limit}")
            for i in range(60):
                checkout.write(f"f{i:02d}.csv", f"{i}\n" * 50)
            result = checkout.run("data", "push")
            assert result.returncode == 0, output(result)
            assert len(bucket.keys(f"{project.name}-{limit}")) == 60
            peaks[limit] = slow.peak
    # datakit's own listing connection stays open beside the AWS CLI's transfers.
    assert peaks[2] <= 3, peaks
    assert peaks[24] >= 12, peaks


def test_without_the_setting_push_opens_32_connections_unless_the_aws_config_says_otherwise(project, s3, bucket):
    from s3proxy import FaultProxy

    peaks = {}
    for own in (None, 3):
        if own:
            project.home.aws_config.parent.mkdir(parents=True, exist_ok=True)
            project.home.aws_config.write_text(f"[default]\ns3 =\n    max_concurrent_requests = {own}\n")
        with FaultProxy(s3.ports["s3.port"], delay=0.02) as slow:
            project.configure(s3_endpoint_url=slow.endpoint_url, s3_path=f"{project.name}-{own}")
            for i in range(80):
                project.write(f"{own}/f{i:02d}.csv", f"{i}\n" * 50)
            ok(project.run("data", "push"))
            assert len(bucket.keys(f"{project.name}-{own}")) == 80 * (2 if own else 1)
            peaks[own] = slow.peak
    # The AWS CLI's own default is 10; datakit's listing connection stays open beside it.
    assert peaks[None] >= 16, peaks
    assert peaks[3] <= 4, peaks


@pytest.mark.parametrize("aws", ["bundled", "v2"])
def test_max_concurrent_requests_reaches_the_cli_and_keeps_the_users_settings(project, bucket, aws):
    if aws == "v2" and not AWS_V2:
        pytest.skip("no AWS CLI v2 at /usr/bin/aws (Debian's awscli package; .ci/run installs it)")
    user_config = "[default]\nregion = us-east-1\ns3 =\n    multipart_chunksize = 16MB\n"
    project.home.aws_config.parent.mkdir(parents=True, exist_ok=True)
    project.home.aws_config.write_text(user_config)
    project.configure(max_concurrent_requests=64)
    project.write("a.txt", "a")

    result = project.run("data", "push", "debug", env={"DATAKIT_DATA_AWS": AWS_V2} if aws == "v2" else {})

    assert result.returncode == 0, output(result)
    assert "The AWS CLI: max_concurrent_requests = 64 for this command" in result.stderr
    assert project.home.aws_config.read_text() == user_config  # set in the CLI's memory only
    assert bucket.objects(project.name) == {"a.txt": b"a"}
    assert not list((project.root / ".datakit-data").glob("staging*/**/aws-config"))


def test_bad_max_concurrent_requests_is_named(project):
    project.configure(max_concurrent_requests="lots")
    project.write("a.txt", "a")

    text = assert_clean_error(project.run("data", "push"))

    assert '"max_concurrent_requests" must be a whole number' in text and "config/datakit-data.json" in text


def test_a_folder_of_more_than_1000_objects_is_listed_whole(project, bucket):
    # More than one listing page: listed again folder by folder, in parallel.
    import concurrent.futures

    expected = {f"top{i}.csv": f"top {i}\n".encode() for i in range(3)}
    expected.update({f"raw/{i // 100}/f{i:04d}.csv": f"{i}\n".encode() for i in range(700)})
    expected.update({f"clean/f{i:03d}.csv": f"c{i}\n".encode() for i in range(350)})
    expected["raw/esc\x1b.csv"] = b"skipped: a control character\n"
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda item: bucket.put(f"{project.name}/{item[0]}", item[1]), expected.items()))
    bucket.put(f"{project.name}/raw/", b"")  # a folder marker, not a file
    project.configure()

    result = project.run("data", "pull")

    del expected["raw/esc\x1b.csv"]
    assert result.returncode == 2, output(result)
    assert "raw/esc\\x1b.csv (a control or invisible character in the name)" in result.stderr
    assert project.files() == expected
    assert "Pull: 1053 file(s) received" in result.stdout


ODD_AWS_CONFIGS = {
    "comment in the s3 block": "[default]\nregion = us-east-1\ns3 =\n    # tuned for the office line\n"
                               "    multipart_chunksize = 16MB\n",
    "s3 block without a final newline": "[default]\nregion = us-east-1\ns3 =\n    multipart_chunksize = 16MB",
    "indented header": "  [default]\nregion = us-east-1\n",
}


@pytest.mark.parametrize("aws", ["bundled", "another"])
@pytest.mark.parametrize("config", sorted(ODD_AWS_CONFIGS))
def test_an_aws_config_the_aws_cli_reads_never_breaks_a_push(project, tmp_path, bucket, config, aws):
    text = ODD_AWS_CONFIGS[config]
    project.home.aws_config.parent.mkdir(parents=True, exist_ok=True)
    project.home.aws_config.write_text(text)
    seen = tmp_path / "seen"
    wrapper = tmp_path / "aws-spy"
    wrapper.write_text(f"#!/bin/sh\ncat \"$AWS_CONFIG_FILE\" > {seen}\nexec {sys.executable} -m awscli \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {"DATAKIT_DATA_AWS": str(wrapper)} if aws == "another" else {}
    project.configure()
    project.write("a.txt", "a")
    temporary_before = set(os.listdir(tempfile.gettempdir()))

    result = project.run("data", "push", env=env)

    assert result.returncode == 0, output(result)
    assert "Traceback" not in output(result)
    assert bucket.objects(project.name) == {"a.txt": b"a"}
    assert project.home.aws_config.read_text() == text
    left = {n for n in set(os.listdir(tempfile.gettempdir())) - temporary_before if n.startswith("datakit-data-")}
    assert not left
    assert not [p for p in (project.root / ".datakit-data").iterdir() if p.name.startswith("push-")]
    if aws == "another":  # the copy it got reads as the user's file, or it got the user's file
        import awscli  # noqa: F401
        from botocore.configloader import raw_config_parse

        got = raw_config_parse(str(seen))
        assert got["default"]["region"] == "us-east-1"
        assert {k: v for k, v in got["default"].get("s3", {}).items() if k != "max_concurrent_requests"} == (
            raw_config_parse(str(project.home.aws_config))["default"].get("s3", {}))


def _probe(request) -> bool:
    """Is this upload a probe, sent under a deliberately wrong condition?"""
    from datakit_data.engine.plugin import WRONG_ETAG, WRONG_MD5

    return request.headers.get("if-match") == f'"{WRONG_ETAG}"' or request.headers.get("content-md5") == WRONG_MD5


def test_the_bundled_aws_cli_is_told_the_listing_and_lists_nothing_itself(project, colleague, standin):
    """datakit lists the folder once and plans; the AWS CLI's sync is told what that
    listing found (aws_cli.answer_listings) instead of listing every page again."""
    for checkout in (project, colleague):
        checkout.configure(s3_path=f"told-{project.name}", s3_endpoint_url=standin.endpoint_url)
    for i in range(3):
        project.write(f"d{i}/f.csv", f"{i}\n")
    ok(project.run("data", "push"))

    def listings():
        return [r for r in standin.seen if r.method == "GET" and "list-type" in r.query]

    standin.seen.clear()
    project.write("d1/f.csv", "changed\n")
    ok(project.run("data", "push"))
    assert len(listings()) == 1  # datakit's own
    # That file only: sent once, after the probes of what the store enforces (conditions.py).
    puts = [r for r in standin.seen if r.method == "PUT"]
    assert {r.key for r in puts} == {f"told-{project.name}/d1/f.csv"}
    assert len([r for r in puts if not _probe(r)]) == 1
    standin.seen.clear()
    project.write("d1/f.csv", "changed again\n")
    ok(project.run("data", "push"))
    assert [r.key for r in standin.seen if r.method == "PUT"] == [f"told-{project.name}/d1/f.csv"]  # proven

    standin.seen.clear()
    ok(colleague.run("data", "pull"))
    assert colleague.files() == project.files()
    assert len(listings()) == 1
    assert sorted(r.key for r in standin.seen if r.method == "GET" and "list-type" not in r.query) == [
        f"told-{project.name}/d{i}/f.csv" for i in range(3)]


def test_the_aws_clis_debug_log_shows_with_debug_and_not_without(project, colleague, bucket):
    """With ``debug`` the CLI's debug log is all there, for push and pull; without it,
    none of it shows. (That no record is made is test_aws_cli's quiet_logs test.)"""
    for checkout in (project, colleague):
        checkout.configure()
    project.write("a.csv", "a\n")

    quiet = project.run("data", "push")
    assert quiet.returncode == 0, output(quiet)
    assert "file does not exist at destination" not in output(quiet)

    project.write("b.csv", "b\n")
    loud = project.run("data", "push", "debug")
    assert loud.returncode == 0, output(loud)
    # The sync strategy's line for the file, and botocore's log: the CLI's debug log.
    assert re.search(r"syncing: \S+/b\.csv -> \S+/b\.csv, file does not exist at destination", output(loud))
    assert "botocore.endpoint - DEBUG - Sending http request" in output(loud)
    assert bucket.objects(project.name) == {"a.csv": b"a\n", "b.csv": b"b\n"}

    loud = colleague.run("data", "pull", "debug")
    assert loud.returncode == 0, output(loud)
    assert re.search(r"syncing: \S+/a\.csv -> \S+/a\.csv, file does not exist at destination", output(loud))
    assert colleague.files() == project.files()
