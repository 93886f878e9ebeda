"""Bad input and faults: each gets one clear line, a non-zero exit, and no data lost."""
import os
import signal
import socket
import time

import pytest

from helpers import BUCKET, assert_clean_error, children_of, output, running, wait_until
from s3proxy import FaultProxy
from s3server import S3Server, free_ports


# configuration -----------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    ('["s3_bucket", "x"]', "must hold a JSON object"),
    ('{"s3_bucket": ["a", "b"], "s3_path": "p"}', '"s3_bucket" must be a string'),
    ('{"s3_bucket": "datakit-test", "aws_user_profile": "default"}', 'no "s3_path"'),
    ('{"s3_bucket": "s3://datakit-test", "s3_path": "p"}', 'Drop the "s3://"'),
    ('{"s3_bucket": "Bad_Bucket", "s3_path": "p"}', "not a valid S3 bucket name"),
    ('{"s3_bucket": "datakit-test", "s3_path": "a/../b"}', '".." segment'),
    ('{"s3_bucket": "datakit-test", "s3_path": "a//b"}', "empty"),
    ('{"s3_bucket": "datakit-test", "s3_path": "s3://datakit-test/p"}', "not a URL"),
])
def test_bad_project_config_is_named_and_nothing_runs(project, bucket, content, expected):
    project.config_path.parent.mkdir(parents=True)
    project.config_path.write_text(content)
    project.write("a.txt", "a")

    for command in ("push", "pull"):
        text = assert_clean_error(project.run("data", command))
        assert "config/datakit-data.json" in text and expected in text
        assert "Running:" not in text
    assert project.files() == {"a.txt": b"a"}


@pytest.mark.parametrize("content, expected", [
    ('"just a string"', "must hold a JSON object"),
    ('{"s3_bucket": 42}', '"s3_bucket" must be a string'),
    ('{"s3_bucket": "x",', "line 1"),
])
def test_bad_global_config_is_named_and_init_writes_no_project_config(project, home, content, expected):
    home.write_global_config(content)

    text = assert_clean_error(project.run("data", "init"))

    assert str(home.global_config_path) in text and expected in text
    assert not project.config_path.exists()
    assert home.global_config_path.read_text() == content


def test_s3_path_slashes_are_normalised(project, bucket):
    project.configure(s3_path=f"/{project.name}/inner/")
    project.write("a.txt", "a")

    result = project.run("data", "push")

    assert result.returncode == 0, output(result)
    assert bucket.objects(f"{project.name}/inner") == {"a.txt": b"a"}


def test_unknown_key_in_global_config_warns_and_init_goes_on(project, home):
    home.write_global_config({"s3_buket": "typo", "s3_bucket": BUCKET, "s3_endpoint_url": home.endpoint_url})

    result = project.run("data", "init")

    assert result.returncode == 0, output(result)
    assert 'unknown key "s3_buket"' in result.stderr and 'Did you mean "s3_bucket"?' in result.stderr
    assert str(home.global_config_path) in result.stderr
    assert project.config()["s3_bucket"] == BUCKET


# files -------------------------------------------------------------------

def test_special_file_is_skipped_named_and_the_rest_pushed(project, bucket):
    project.configure()
    project.write("good.txt", "good")
    os.mkfifo(project.data / "pipe")

    result = project.run("data", "push")

    text = assert_clean_error(result, code=2)
    assert "data/pipe" in text
    assert bucket.objects(project.name) == {"good.txt": b"good"}


STRANGE_NAMES = [
    "with space.csv",
    "accentué/naïve café.txt",
    "brackets [1] (2) {3}.csv",
    "star*and?question.txt",
    "-leading-dash.csv",
    "a/b/c/d/e/f/deep.bin",
    "percent%20plus+amp&.txt",
]


def test_strange_file_names_round_trip_byte_for_byte(project, colleague, bucket):
    project.configure()
    for i, name in enumerate(STRANGE_NAMES):
        project.write(name, os.urandom(100 + i) + name.encode())

    assert project.run("data", "push").returncode == 0
    assert bucket.objects(project.name) == project.files()

    colleague.configure()
    result = colleague.run("data", "pull")

    assert result.returncode == 0, output(result)
    assert colleague.files() == project.files()
    assert sorted(colleague.files()) == sorted(STRANGE_NAMES)


# credentials and endpoints -----------------------------------------------

def test_refused_credentials_name_the_profile_and_never_print_the_secret(project, auth_s3):
    project.home.add_profile("analyst", "AKIDWRONGWRONG", "wrong-secret-do-not-print")
    project.configure(aws_user_profile="analyst", s3_endpoint_url=auth_s3.endpoint_url)
    project.write("a.txt", "a")

    text = assert_clean_error(project.run("data", "push"))

    assert 'refused the credentials of AWS profile "analyst"' in text
    assert "wrong-secret-do-not-print" not in text and "AKIDWRONGWRONG" not in text

    # The right keys work against the same server.
    project.configure(s3_endpoint_url=auth_s3.endpoint_url)
    assert project.run("data", "push").returncode == 0


def test_unreachable_endpoint_fails_with_a_clear_line(project):
    port = free_ports(1)[0]  # nothing listens there
    project.configure(s3_endpoint_url=f"http://127.0.0.1:{port}")
    project.write("a.txt", "a")

    text = assert_clean_error(project.run("data", "push", timeout=60))

    assert f"could not connect to http://127.0.0.1:{port}" in text


def test_endpoint_that_never_accepts_fails_within_the_documented_minute(project):
    # A listener whose accept queue is full drops new connections: a connect timeout.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(2):
        filler = socket.socket()
        filler.settimeout(0.5)
        try:
            filler.connect(server.getsockname())
        except OSError:
            pass
        fillers.append(filler)
    try:
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        project.configure(s3_endpoint_url=endpoint)
        project.write("a.txt", "a")

        started = time.monotonic()
        result = project.run("data", "pull", timeout=120)
        elapsed = time.monotonic() - started

        text = assert_clean_error(result)
        assert f"could not connect to {endpoint}" in text
        # docs/usage.rst: 5 s per connection, 3 attempts, "well under a minute".
        assert elapsed < 60, f"took {elapsed:.0f} s"
    finally:
        for sock in fillers + [server]:
            sock.close()


def test_endpoint_that_accepts_but_never_answers_fails_within_a_minute_in_3_attempts(project, proxy):
    project.configure(s3_endpoint_url=proxy.endpoint_url)
    project.write("a.txt", "a")
    proxy.hold()  # connections are accepted; nothing is ever answered

    started = time.monotonic()
    result = project.run("data", "push", timeout=120)
    elapsed = time.monotonic() - started

    text = assert_clean_error(result)
    assert (
        f"Listing s3://{BUCKET}/{project.name}/ failed: {proxy.endpoint_url} accepted the connection "
        "but did not answer within 15 s (3 attempts)."
    ) in text
    assert "AWS CLI" not in text  # the CLI never ran
    assert proxy.connections == 3
    assert elapsed < 60, f"took {elapsed:.0f} s"


# faults ------------------------------------------------------------------

@pytest.fixture
def own_s3(tmp_path):
    """A server of this test's own, which the test may kill and restart."""
    with S3Server(tmp_path / "own-weed", BUCKET) as server:
        yield server


def test_server_dying_mid_push_fails_and_a_rerun_converges(project, own_s3):
    from helpers import Bucket, _client

    own_bucket = Bucket(_client(own_s3.endpoint_url), BUCKET)
    own_bucket.put("warm-up", b"")  # a fresh server's first write waits for a volume
    with FaultProxy(own_s3.ports["s3.port"]) as proxy:
        project.configure(s3_endpoint_url=proxy.endpoint_url, max_concurrent_requests=10)
        for i in range(300):
            project.write(f"rows/{i:04d}.csv", f"{i}," * 300)
        # After 60,000 bytes (a few dozen uploads), the server dies: every connection is
        # reset and none is accepted again. Nothing is ever held, so no request can time
        # out instead, however slow this machine is.
        proxy.cut_after(60_000, then=own_s3.kill)
        result = project.run("data", "push", timeout=120)

        text = assert_clean_error(result)
        assert f"could not connect to {proxy.endpoint_url}" in text
        assert "did not answer" not in text

        own_s3.start()
        landed = own_bucket.keys(project.name)
        assert 0 < len(landed) < 300, "the server did not die mid-push"
        proxy.start()
        proxy.release()
        again = project.run("data", "push")
        assert again.returncode == 0, output(again)
        assert own_bucket.objects(project.name) == project.files()


def test_a_second_push_or_pull_refuses_while_the_first_runs(project, bucket, proxy):
    project.configure(s3_endpoint_url=proxy.endpoint_url)
    for i in range(20):
        project.write(f"rows/{i:04d}.csv", f"{i}," * 50)
    proxy.hold()  # the first push waits at its listing, holding the project's lock
    with project.start("data", "push") as first:
        proxy.wait_for_connections(1)

        second = project.run("data", "push")
        pull = project.run("data", "pull")
        proxy.release()
        done = first.finish(timeout=60)

    text = assert_clean_error(second)
    assert f"`datakit data push` (pid {first.pid}) is already running in this project" in text
    assert "Wait for it to finish, then run `datakit data push` again." in text
    text = assert_clean_error(pull)
    assert f"`datakit data push` (pid {first.pid}) is already running" in text
    assert "then run `datakit data pull` again" in text
    assert done.returncode == 0, output(done)
    assert bucket.objects(project.name) == project.files()


# stopping a run ----------------------------------------------------------------

def _start_held_push(project, bucket, proxy, count=200):
    project.configure(s3_endpoint_url=proxy.endpoint_url)
    for i in range(count):
        project.write(f"rows/{i:04d}.csv", f"{i}," * 300)
    proxy.hold_after(40_000)  # a few uploads arrive, then the push waits mid-upload
    proc = project.start("data", "push")
    wait_until(lambda: bucket.keys(project.name), "a first object on S3")
    aws_cli = children_of(proc.pid)
    assert aws_cli, "the push has started no AWS CLI"
    return proc, aws_cli


@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_sigterm_and_sighup_stop_the_aws_cli_before_datakit_exits(project, bucket, proxy, sig, code, name):
    proc, aws_cli = _start_held_push(project, bucket, proxy)
    with proc:
        os.kill(proc.pid, sig)  # `kill PID`, `timeout`, a closed terminal: datakit only
        proxy.release()
        result = proc.finish(timeout=60)
        still = [pid for pid in aws_cli if running(pid)]

    text = assert_clean_error(result, code=code)
    assert f"Push stopped by {name}; files already transferred are complete." in text
    assert still == [], "the AWS CLI outlived datakit"
    again = project.run("data", "push")
    assert again.returncode == 0, output(again)
    assert bucket.objects(project.name) == project.files()


def test_a_killed_push_leaves_no_aws_cli_running_and_the_next_run_cleans_up(project, bucket, proxy):
    proc, aws_cli = _start_held_push(project, bucket, proxy)
    with proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.proc.wait()
        wait_until(lambda: not [pid for pid in aws_cli if running(pid)], "end of the AWS CLI", timeout=5)
    state = project.root / ".datakit-data"
    assert [p.name for p in state.iterdir() if p.name.startswith("push-")] == [f"push-{proc.pid}"]

    proxy.release()
    again = project.run("data", "push")

    assert again.returncode == 0, output(again)
    assert bucket.objects(project.name) == project.files()
    assert not [p for p in state.iterdir() if p.name.startswith(("push-", "pull-"))]
