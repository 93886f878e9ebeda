"""Shared fixtures: one SeaweedFS server per test session, an isolated home per test.

Every test that runs `datakit` does so as a subprocess with HOME, DATAKIT_HOME,
AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE pointing into its own temporary
folder, so no test reads or writes a real home. Anything a test's `datakit`
tries to send beyond loopback goes to a proxy of ours that refuses it and
records it, and the test fails. Every process a test starts runs in its own
process group, is waited on with a timeout, and is killed with its group.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from s3proxy import FaultProxy  # noqa: E402
from s3standin import StandIn  # noqa: E402
from s3server import OUTER, MotoServer, S3Server, die_with_parent, isolated_client, isolated_env  # noqa: E402

BUCKET = "datakit-test"
ACCESS_KEY = "AKIDTESTTEST"
SECRET_KEY = "test-secret-key-not-real"
DATAKIT = str(Path(sys.executable).parent / "datakit")


def _aws_v2() -> str | None:
    """Debian's awscli package, an AWS CLI v2, when it is installed (.ci/run installs it)."""
    try:
        version = subprocess.run(["/usr/bin/aws", "--version"], capture_output=True, text=True, timeout=60,
                                 env={"PATH": "/usr/bin:/bin", "HOME": os.devnull}).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return "/usr/bin/aws" if version.startswith("aws-cli/2.") else None


#: An AWS CLI v2 to test DATAKIT_DATA_AWS with, or None (those tests skip).
AWS_V2 = _aws_v2()



def _isolate_this_process() -> None:
    """The test process itself reads no real AWS config, profile or proxy."""
    for key in [k for k in os.environ if k.startswith(OUTER)]:
        del os.environ[key]
    os.environ.update({
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    })


_isolate_this_process()


class OutsideWatch:
    """A proxy that lets nothing out: it records what each connection asked for and refuses it.

    ``outside()`` lists the requests meant for a host beyond loopback. (A request for a
    loopback URL can land here too: HTTP clients skip NO_PROXY when the URL holds
    credentials, ``http://user:pw@127.0.0.1``; it has not left the machine.)
    """

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.attempts: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0]
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    first = b"(nothing sent)"
            self.attempts.append(first.decode(errors="replace"))

    def outside(self, since: int = 0) -> list[str]:
        """Recorded request lines whose target is not on loopback."""
        found = []
        for line in self.attempts[since:]:
            parts = line.split()
            target = parts[1] if len(parts) > 1 else ""
            host = urllib.parse.urlsplit(target if "://" in target else f"//{target}").hostname
            if host not in ("127.0.0.1", "localhost"):
                found.append(line)
        return found

    def close(self):
        self.sock.close()


@pytest.fixture(scope="session")
def outside():
    watch = OutsideWatch()
    yield watch
    watch.close()


@pytest.fixture(autouse=True)
def nothing_leaves_loopback(outside, request):
    """Fail any test whose `datakit` tried to reach beyond loopback."""
    before = len(outside.attempts)
    yield
    tried = outside.outside(before)
    assert not tried, f"{request.node.name} tried to reach beyond loopback: {tried}"


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """The S3 server for the whole test session."""
    with S3Server(tmp_path_factory.mktemp("weed"), BUCKET) as server:
        yield server


@pytest.fixture(scope="session")
def auth_s3(tmp_path_factory):
    """A second server that accepts only ACCESS_KEY / SECRET_KEY (no anonymous requests)."""
    with S3Server(tmp_path_factory.mktemp("weed-auth"), BUCKET, ACCESS_KEY, SECRET_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """moto's S3 server: keys stored exactly as given, as AWS S3 stores them."""
    with MotoServer(tmp_path_factory.mktemp("moto"), BUCKET) as server:
        yield server


VERSIONED = "datakit-versioned"


@pytest.fixture(scope="session")
def versioned(s3):
    """A second bucket of the session's server, with versioning on."""
    client = _client(s3.endpoint_url)
    client.create_bucket(Bucket=VERSIONED)
    client.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    return Bucket(client, VERSIONED)


@pytest.fixture
def standin(s3):
    """An HTTP proxy in front of the session's server that can hold or answer one S3
    operation (see s3standin.py)."""
    with StandIn(s3.ports["s3.port"]) as proxy:
        yield proxy


@pytest.fixture
def moto_bucket(moto):
    return Bucket(_client(moto.endpoint_url), BUCKET)


@pytest.fixture
def proxy(s3):
    """A fault-injecting proxy in front of the session's server (see s3proxy.py)."""
    with FaultProxy(s3.ports["s3.port"]) as fault_proxy:
        yield fault_proxy


def _client(endpoint_url: str):
    """A botocore S3 client for a test server, built from nothing but these values."""
    return isolated_client(endpoint_url, ACCESS_KEY, SECRET_KEY)


@pytest.fixture(scope="session")
def bucket(s3):
    """The test bucket, to see what a user would see on S3."""
    return Bucket(_client(s3.endpoint_url), BUCKET)


class Bucket:
    """What is in the test bucket, as keys and bytes."""

    def __init__(self, client, name):
        self.client = client
        self.name = name

    def objects(self, prefix: str) -> dict[str, bytes]:
        """{key relative to prefix: bytes} for every object under prefix/."""
        found = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix + "/")
        for page in pages:
            for item in page.get("Contents", []):
                body = self.client.get_object(Bucket=self.name, Key=item["Key"])["Body"].read()
                found[item["Key"][len(prefix) + 1:]] = body
        return found

    def keys(self, prefix: str) -> list[str]:
        """Keys under prefix/, without reading the objects."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix + "/")
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)


class Home:
    """A temporary home: DATAKIT_HOME, AWS files and the environment pointing at them."""

    def __init__(self, root: Path, endpoint_url: str, outside_url: str):
        self.root = root
        self.datakit_home = root / ".datakit"
        self.aws_config = root / ".aws" / "config"
        self.aws_credentials = root / ".aws" / "credentials"
        self.endpoint_url = endpoint_url
        # Anything not on loopback goes to the watching proxy, never out.
        self.env = isolated_env(root, ACCESS_KEY, SECRET_KEY, proxy=outside_url)

    @property
    def global_config_path(self) -> Path:
        return self.datakit_home / "plugins" / "datakit-data" / "config.json"

    def write_global_config(self, config) -> None:
        self.global_config_path.parent.mkdir(parents=True, exist_ok=True)
        text = config if isinstance(config, str) else json.dumps(config)
        self.global_config_path.write_text(text)

    def add_profile(self, name: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> None:
        self.aws_credentials.parent.mkdir(parents=True, exist_ok=True)
        with open(self.aws_credentials, "a") as fh:
            fh.write(f"[{name}]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n")


class Project:
    """A project folder and a way to run `datakit` in it."""

    def __init__(self, root: Path, home: Home):
        self.root = root
        self.home = home
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config_path(self) -> Path:
        return self.root / "config" / "datakit-data.json"

    def config(self) -> dict:
        return json.loads(self.config_path.read_text())

    def write_config(self, **values) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(values))

    def configure(self, **overrides) -> None:
        """A project config pointing at the test server, under a unique s3_path."""
        values = {
            "aws_user_profile": "default",
            "s3_bucket": BUCKET,
            "s3_path": self.name,
            "s3_endpoint_url": self.home.endpoint_url,
        }
        values.update(overrides)
        self.write_config(**{k: v for k, v in values.items() if v is not None})

    def write(self, relative: str, content: bytes | str) -> Path:
        path = self.data / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def files(self) -> dict[str, bytes]:
        """{path relative to data/: bytes} for every file in data/."""
        return {
            p.relative_to(self.data).as_posix(): p.read_bytes()
            for p in sorted(self.data.rglob("*")) if p.is_file()
        }

    def run(self, *args: str, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the installed `datakit` here to the end, with no terminal on stdin."""
        with self.start(*args, env=env) as proc:
            return proc.finish(timeout)

    def start(self, *args: str, env=None) -> "Background":
        """Start `datakit` here in the background (use it in a `with` block)."""
        full_env = dict(self.home.env)
        full_env.update(env or {})
        return Background([DATAKIT, *args], cwd=self.root, env=full_env)


class Background:
    """A command in its own process group, its output in files: never an unbounded read.

    Leaving the `with` block kills the whole group (the command and anything it
    started) if it is still running.
    """

    def __init__(self, args, cwd, env):
        self.args = args
        self.out = open(Path(cwd).parent / f".out-{uuid.uuid4().hex}", "w+", encoding="utf-8", errors="replace")
        self.err = open(Path(cwd).parent / f".err-{uuid.uuid4().hex}", "w+", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err,
            start_new_session=True, preexec_fn=die_with_parent(),
        )
        self.pid = self.proc.pid

    def stderr(self) -> str:
        with open(self.err.name, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def signal(self, sig: int) -> None:
        """Send a signal to the whole group, as a terminal does on Ctrl-C."""
        os.killpg(self.pid, sig)

    def finish(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait for the end (at most timeout seconds; then kill the group and fail)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.args} did not finish in {timeout} s: {self.stderr()}")
        self.out.seek(0)
        self.err.seek(0)
        return subprocess.CompletedProcess(self.args, self.proc.returncode, self.out.read(), self.err.read())

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()  # the group: a leader that has exited may have left children
        for fh in (self.out, self.err):
            fh.close()
            os.unlink(fh.name)


@pytest.fixture
def home(tmp_path, s3, outside):
    return Home(tmp_path / "home", s3.endpoint_url, outside.url)


@pytest.fixture
def project(tmp_path, home):
    """An empty project folder with a unique name (so a unique s3_path)."""
    return Project(tmp_path / f"project-{uuid.uuid4().hex[:10]}", home)


@pytest.fixture
def colleague(tmp_path, home, project):
    """A second checkout of the same project, on another machine (same s3_path)."""
    other = Project(tmp_path / "colleague" / project.name, home)
    return other


@pytest.fixture
def pair(project, colleague):
    """Analyst A (project) and analyst B (colleague), synced on one file."""
    project.configure()
    colleague.configure()
    project.write("shared.csv", "v1,aaaa\n")
    ok(project.run("data", "push"))
    ok(colleague.run("data", "pull"))
    return project, colleague


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """A run that must succeed: exit 0, or fail the test showing its output."""
    assert result.returncode == 0, output(result)
    return result


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def assert_clean_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """A user error: this exit code, no traceback. Returns the combined output."""
    text = output(result)
    assert result.returncode == code, text
    assert "Traceback" not in text, text
    return text


def wait_until(condition, what: str, timeout: float = 30, every: float = 0.05):
    """Poll condition until it is true; fail naming what did not happen in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(every)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is pid (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def running(pid: int) -> bool:
    """Is pid a live process (not gone, not a zombie waiting to be reaped)?"""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
