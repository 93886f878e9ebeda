"""Bad input and faults: each gets one clear line, a non-zero exit, and no data lost."""
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

from conftest import ACCESS_KEY, BUCKET, DATAKIT, SECRET_KEY, Project, assert_clean_error, output
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
    home.write_global_config({"s3_buket": "typo", "s3_bucket": BUCKET})

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

    text = assert_clean_error(result)
    assert result.returncode == 2 and "data/pipe" in text
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

@pytest.fixture(scope="session")
def auth_s3(tmp_path_factory):
    """A second server that accepts only ACCESS_KEY / SECRET_KEY."""
    server = S3Server(tmp_path_factory.mktemp("weed-auth"), BUCKET, ACCESS_KEY, SECRET_KEY)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


def test_endpoint_that_never_accepts_times_out_in_bounded_time(project):
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
        project.configure(s3_endpoint_url=f"http://127.0.0.1:{server.getsockname()[1]}")
        project.write("a.txt", "a")

        # 3 attempts x 5 s connect timeout, plus backoff: well under the 90 s guard.
        text = assert_clean_error(project.run("data", "pull", timeout=90))

        assert "could not connect to" in text
    finally:
        for sock in fillers + [server]:
            sock.close()


# faults ------------------------------------------------------------------

@pytest.fixture
def own_s3(tmp_path):
    """A server of this test's own, which the test may kill and restart."""
    server = S3Server(tmp_path / "own-weed", BUCKET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _start_push(project):
    return subprocess.Popen(
        [DATAKIT, "data", "push"], cwd=project.root, env=project.home.env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _wait_for_first_object(bucket, prefix):
    deadline = time.monotonic() + 30
    while not bucket.keys(prefix) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_server_dying_mid_push_fails_in_bounded_time_and_a_rerun_converges(project, own_s3):
    from conftest import Bucket, _client

    own_bucket = Bucket(_client(own_s3.endpoint_url), BUCKET)
    project.configure(s3_endpoint_url=own_s3.endpoint_url)
    for i in range(1000):
        project.write(f"rows/{i:04d}.csv", f"{i}," * 300)
    proc = _start_push(project)
    _wait_for_first_object(own_bucket, project.name)

    os.killpg(own_s3.proc.pid, signal.SIGKILL)
    own_s3.proc.wait()
    own_s3.proc = None
    own_s3.log.close()
    _, err = proc.communicate(timeout=120)

    assert proc.returncode not in (0, None), err
    assert "Traceback" not in err and "could not connect to" in err

    own_s3.start()
    result = project.run("data", "push")
    assert result.returncode == 0, output(result)
    assert own_bucket.objects(project.name) == project.files()


def test_a_second_push_in_the_same_project_refuses_while_the_first_runs(project, bucket):
    project.configure()
    for i in range(1000):
        project.write(f"rows/{i:04d}.csv", f"{i}," * 50)
    first = _start_push(project)
    _wait_for_first_object(bucket, project.name)

    second = project.run("data", "push")
    pull = project.run("data", "pull")
    _, err = first.communicate(timeout=120)

    text = assert_clean_error(second)
    assert "`datakit data push` (pid" in text and "already running" in text
    assert "Wait for it to finish" in text
    assert "already running" in assert_clean_error(pull)
    assert first.returncode == 0, err
    assert bucket.objects(project.name) == project.files()
