"""datakit_data/engine: the AWS CLIs datakit drives with its plugin, and each awscli or
botocore internal datakit relies on, in a test of its own (a changed awscli fails
here, by name, not somewhere in a push)."""
import argparse
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import uuid

import pytest

from datakit_data.engine import aws, cli, plugin
from datakit_data.settings import Settings

from helpers import AWS_V2, BUCKET, ok

NO_V2 = "no AWS CLI v2 at /usr/bin/aws (Debian's awscli package; .ci/run installs it)"
MIB = 1024 * 1024


def test_default_aws_is_the_awscli_beside_the_plugin():
    assert cli.aws_command({}) == [sys.executable, "-m", "awscli"]
    assert cli.aws_command({"DATAKIT_DATA_AWS": "/opt/aws v2"}) == ["/opt/aws", "v2"]


def test_retry_policy_is_bounded_unless_the_user_set_one():
    assert cli.child_env({"PATH": "/bin"}) == {"PATH": "/bin", "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "3"}
    assert cli.child_env({"AWS_MAX_ATTEMPTS": "10"}) == {"AWS_MAX_ATTEMPTS": "10"}


def test_the_plugin_imports_with_the_standard_library_alone(tmp_path):
    """Any AWS CLI's Python can load it: nothing of datakit, awscli or botocore at import."""
    code = ("import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p and 'dist-packages' not in p]; "
            f"sys.path.insert(0, {str(tmp_path)!r}); import dk; print(dk.VERSION, sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('awscli', 'botocore', 'datakit_data')))")
    (tmp_path / "dk.py").write_bytes(open(plugin.__file__, "rb").read())
    found = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [str(plugin.VERSION), "[]"]


# Internals of awscli and botocore, one test each -----------------------------

def test_internal_the_launcher_makes_the_clis_driver_and_loads_the_s3_model():
    import awscli.clidriver

    driver = awscli.clidriver.create_clidriver()
    driver.session.get_service_model("s3")
    driver.session.get_component("data_loader").load_service_model("s3", "endpoint-rule-set-1")
    assert callable(driver.main) and callable(driver.session.register)


def test_internal_session_initialized_comes_after_the_loggers_and_its_config_is_what_s3_commands_read(tmp_path,
                                                                                                     capsys):
    """The plugin's settings for one command: set in the config as read, at
    session-initialized, which the CLI emits after setting its loggers; the quiet
    logger makes no record its handler would throw away, and errors still show."""
    import awscli.clidriver

    made = []
    factory = logging.getLogRecordFactory()

    def counting(*args, **kwargs):
        record = factory(*args, **kwargs)
        made.append(record.levelno)
        return record

    logger = logging.getLogger("awscli")
    level, handlers = logger.level, list(logger.handlers)
    sync = logging.getLogger("awscli.customizations.s3.syncstrategy.base")
    logging.setLogRecordFactory(counting)
    try:
        for quiet in (False, True):
            session = awscli.clidriver.create_clidriver().session
            plugin.install(session, {"events": str(tmp_path / f"events-{quiet}.jsonl"), "quiet": quiet,
                                     "concurrency": [48, False]})
            session.set_stream_logger(logger_name="awscli", log_level=logging.ERROR)  # as main() does
            session.emit("session-initialized", session=session, parsed_args=argparse.Namespace(command="s3"))
            made.clear()
            sync.debug("syncing: a -> b, file does not exist at destination")
            sync.error("an error the user must see")
            assert made == ([logging.ERROR] if quiet else [logging.DEBUG, logging.ERROR])
            assert session.get_scoped_config()["s3"]["max_concurrent_requests"] == "48"
            logger.handlers[:] = handlers
            logger.setLevel(level)
    finally:
        logging.setLogRecordFactory(factory)
        logger.setLevel(level)
        logger.handlers[:] = handlers
    assert capsys.readouterr().err.count("an error the user must see") == 2
    events = [json.loads(line) for line in (tmp_path / "events-True.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "loaded" and events[0]["cli"].startswith("aws-cli/1.")
    assert {"event": "note", "text": "max_concurrent_requests = 48 for this command"} in events


def test_internal_the_transfer_settings_are_read_as_the_aws_cli_reads_them():
    sizes = aws.transfer_config({"multipart_chunksize": "16MB", "multipart_threshold": "64MB"})
    assert (sizes["multipart_chunksize"], sizes["multipart_threshold"]) == (16 * MIB, 64 * MIB)
    with pytest.raises(ValueError):
        aws.transfer_config({"multipart_chunksize": "lots"})


def test_internal_config_files_parse_with_nested_s3_settings(tmp_path, monkeypatch):
    path = tmp_path / "config"
    path.write_text("[default]\nregion = x\ns3 =\n    max_concurrent_requests = 4\n[plugins]\na = b\n")
    assert aws.parse_config(str(path)) == {"default": {"region": "x", "s3": {"max_concurrent_requests": "4"}},
                                           "plugins": {"a": "b"}}
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    assert aws.s3_config(None) == {"max_concurrent_requests": "4"}


def test_internal_listing_pages_are_seen_first_and_times_kept_as_text(s3, bucket):
    """read_pages_first: botocore's _handle_200_error, and before-parse with the
    customized_response_dict; and set_parser_defaults(timestamp_parser=str)."""
    served = aws.botocore()
    assert callable(getattr(served.handlers, "_handle_200_error", None))
    prefix = f"pages-{uuid.uuid4().hex[:8]}/"
    bucket.put(prefix + "a.csv", b"a")
    session = aws.session(None, text_times=True)
    client = session.create_client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                                   aws_access_key_id="x", aws_secret_access_key="y")
    seen = []
    aws.read_pages_first(client, lambda response, customized: seen.append((response["body"][:5], type(customized))))
    page = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    assert seen == [(b"<?xml", dict)]
    assert isinstance(page["Contents"][0]["LastModified"], str)


def test_internal_the_clis_transfer_client_setting(tmp_path):
    """The bundled v1 has no preferred_transfer_client; AWS CLI v2 names its classic client."""
    assert plugin._classic_transfer_client() is None
    if not AWS_V2:
        pytest.skip(NO_V2)
    (tmp_path / "dk.py").write_bytes(open(plugin.__file__, "rb").read())
    python = open(AWS_V2).readline().removeprefix("#!").strip()
    found = subprocess.run([python, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import dk; "
                            "print(dk._classic_transfer_client())"], capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() in ("default", "classic"), found.stderr


# One engine, two CLIs: a real run of each ------------------------------------

@pytest.fixture
def isolated(home, monkeypatch):
    """This process's environment: the test home's only (the engine starts the CLI with it)."""
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    return home


@pytest.mark.parametrize("which", ["bundled", "v2"])
def test_each_engine_uploads_under_conditions_and_reports_every_file(isolated, s3, bucket, tmp_path, which):
    """A new file (If-None-Match: *), a stale small file and a stale 9 MiB file
    (If-Match with an ETag S3 no longer has): the first is sent, the others refused
    by S3 (the multipart one at CompleteMultipartUpload) and reported, not failed."""
    if which == "v2" and not AWS_V2:
        pytest.skip(NO_V2)
    prefix = f"engine-{which}-{uuid.uuid4().hex[:8]}"
    settings = Settings(bucket=BUCKET, path=prefix, profile=None, endpoint_url=s3.endpoint_url)
    bucket.put(f"{prefix}/stale.csv", b"theirs\n")
    bucket.put(f"{prefix}/big.bin", b"theirs, big\n")
    staging = tmp_path / "staging"
    (staging / "data").mkdir(parents=True)
    (staging / "data" / "new.csv").write_bytes(b"new\n")
    (staging / "data" / "stale.csv").write_bytes(b"mine\n")
    (staging / "data" / "big.bin").write_bytes(os.urandom(9 * MIB))
    expect = {f"{prefix}/new.csv": None, f"{prefix}/stale.csv": "0" * 31 + "1", f"{prefix}/big.bin": "0" * 31 + "2"}
    from datakit_data import aws_cli

    env = {"DATAKIT_DATA_AWS": AWS_V2} if which == "v2" else {}
    with cli.open_engine(env) as engine:
        engine.prepare(str(staging), {}, (8, True))
        assert engine.hooks and engine.without_hooks == ""
        answers = engine.run(aws_cli.upload_args(settings, []), settings, "push",
                             events=str(staging / "events.jsonl"), guard={"expect": expect, "probe": []},
                             guarded=expect, listing=[])

    assert bucket.objects(prefix) == {"new.csv": b"new\n", "stale.csv": b"theirs\n", "big.bin": b"theirs, big\n"}
    assert answers.loaded.startswith("aws-cli/2." if which == "v2" else "aws-cli/1.")
    assert answers.sent == {"new.csv": hashlib.md5(b"new\n").hexdigest()}
    assert answers.refused == {"stale.csv": "PreconditionFailed", "big.bin": "PreconditionFailed"}
    assert answers.failed == {} and answers.changed == {}
    events = [json.loads(line) for line in (staging / "events.jsonl").read_text().splitlines()]
    kinds = [(e["event"], e.get("key", "").rsplit("/", 1)[-1]) for e in events]
    assert kinds[0] == ("loaded", "")
    for name in ("new.csv", "stale.csv", "big.bin"):
        assert kinds.index(("started", name)) < max(i for i, k in enumerate(kinds) if k[1] == name)
    assert sorted(e["bytes"] for e in events if e["event"] == "bytes" and e["key"].endswith("big.bin")) == [MIB, 8 * MIB]
    refusals = {e["key"].rsplit("/", 1)[-1]: e["condition"] for e in events if e["event"] == "refused"}
    assert refusals == {"stale.csv": "If-Match", "big.bin": "If-Match"}
    assert "max_concurrent_requests = 8 for this command" in answers.notes


# AWS CLI v2 through the real datakit ------------------------------------------

def _script(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.skipif(not AWS_V2, reason=NO_V2)
def test_a_v2_that_does_not_load_the_plugin_pushes_checked_after_upload_and_says_so(project, bucket, tmp_path):
    # As an AWS CLI without plugin support would: it reads the user's own config only.
    wrapper = _script(tmp_path / "aws-without-plugins", f"#!/bin/sh\nunset AWS_CONFIG_FILE\nexec {AWS_V2} \"$@\"\n")
    project.configure()
    project.write("a.csv", "a\n")

    pushed = ok(project.run("data", "push", env={"DATAKIT_DATA_AWS": wrapper}))
    status = ok(project.run("data", "status", env={"DATAKIT_DATA_AWS": wrapper})).stdout

    assert bucket.objects(project.name) == {"a.csv": b"a\n"}
    said = [line for line in pushed.stderr.splitlines() if "did not load datakit's plugin" in line]
    assert len(said) == 1 and said[0].startswith("This push's new files are checked after upload only: "
                                                 f"DATAKIT_DATA_AWS runs another AWS CLI, {wrapper}")
    assert "concurrent pushes, changed files: checked after upload only: DATAKIT_DATA_AWS runs another" in status
    assert "did not load datakit's plugin" in status


@pytest.mark.skipif(not AWS_V2, reason=NO_V2)
def test_a_cli_that_loads_the_plugin_when_asked_and_runs_without_it_is_not_trusted(project, bucket, tmp_path):
    # It answers `--version` with the plugin, and runs everything else with the user's config alone.
    wrapper = _script(tmp_path / "aws-two-faced", f"#!/bin/sh\nif [ \"$1\" = --version ]; then exec {AWS_V2} \"$@\"; fi\n"
                      f"unset AWS_CONFIG_FILE\nexec {AWS_V2} \"$@\"\n")
    project.configure()
    project.write("a.csv", "a\n")
    env = {"DATAKIT_DATA_AWS": wrapper}
    assert "concurrent pushes, new files: checked after upload only: not yet proven" in ok(
        project.run("data", "status", env=env)).stdout  # `status` asked it: it said it loads the plugin

    pushed = ok(project.run("data", "push", env=env))

    # The push runs with an option only the plugin knows: this CLI refuses it before it
    # sends anything, and the push goes on without the plugin, and says so.
    assert bucket.objects(project.name) == {"a.csv": b"a\n"}
    assert "did not load datakit's plugin" in pushed.stderr and "Unknown options: --datakit-data-run" in pushed.stderr
    assert "1 file(s) sent" in pushed.stdout
    status = ok(project.run("data", "status", env=env)).stdout  # what the push found is what status says now
    assert "concurrent pushes, new files: checked after upload only: DATAKIT_DATA_AWS runs another" in status


def test_the_users_plugin_folders_are_put_back_as_the_aws_cli_reads_them(tmp_path):
    """cli_legacy_plugin_path may name several folders (os.pathsep between them)."""
    setup = tmp_path / "setup.json"
    setup.write_text(json.dumps({"events": str(tmp_path / "e.jsonl"), "user_plugin_path": f"/a{os.pathsep}/b"}))
    (tmp_path / "dk.py").write_bytes(open(plugin.__file__, "rb").read())
    found = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import dk; "
                            "print(sys.path[-2:])"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, plugin.SETUP_ENV: str(setup)})
    assert found.stdout.strip() == "['/a', '/b']", found.stderr


@pytest.mark.skipif(not AWS_V2, reason=NO_V2)
def test_v2_keeps_the_users_own_plugins_and_runs_classic_for_a_config_that_asks_for_crt(pair, bucket, tmp_path):
    a, b = pair
    theirs = tmp_path / "my-plugins"
    theirs.mkdir()
    marker = tmp_path / "my-plugin-ran"
    (theirs / "my_plugin.py").write_text(
        f"def awscli_initialize(cli):\n    open({str(marker)!r}, 'a').write('ran\\n')\n")
    user_config = (f"[default]\nregion = us-east-1\ns3 =\n    preferred_transfer_client = crt\n\n"
                   f"[plugins]\nmine = my_plugin\ncli_legacy_plugin_path = {theirs}\n")
    a.home.aws_config.parent.mkdir(parents=True, exist_ok=True)
    a.home.aws_config.write_text(user_config)
    v2 = {"DATAKIT_DATA_AWS": AWS_V2}
    a.write("shared.csv", "v2 from A\n")  # replaces v1: carries the probes

    pushed = ok(a.run("data", "push", "debug", env=v2))

    assert bucket.objects(a.name) == {"shared.csv": b"v2 from A\n"}
    assert a.home.aws_config.read_text() == user_config  # never edited
    assert marker.read_text().count("ran") == 1  # their plugin, in the push
    assert ("The AWS CLI: preferred_transfer_client = crt in the AWS config: this command runs the classic "
            "transfer client") in pushed.stderr
    status = ok(a.run("data", "status", env=v2)).stdout
    assert "concurrent pushes, changed files: compare-and-swap: proven" in status
