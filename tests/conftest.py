"""Shared fixtures: one SeaweedFS server per test session, an isolated home per test.

Every test that runs `datakit` does so as a subprocess with HOME, DATAKIT_HOME,
AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE pointing into its own temporary
folder, so no test reads or writes a real home. Anything a test's `datakit`
tries to send beyond loopback goes to a proxy of ours that refuses it and
records it, and the test fails. Every process a test starts runs in its own
process group, is waited on with a timeout, and is killed with its group.

What tests import by name (Project, Bucket, ok, ...) is in helpers.py.
"""
import os
import signal
import socket
import sys
import threading
import urllib.parse
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import ACCESS_KEY, BUCKET, SECRET_KEY, VERSIONED, Bucket, Home, Project, _client, ok  # noqa: E402
from s3proxy import FaultProxy  # noqa: E402
from s3standin import StandIn  # noqa: E402
from s3server import OUTER, MotoServer, RcloneServer, S3Server  # noqa: E402


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
# Started in the background by a shell without job control (nohup make test &), this
# process and every datakit it starts would ignore SIGINT, and the Ctrl-C tests would
# see a push run to its end. A handler of ours is reset to the default across exec.
signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture(scope="session")
def rclone(tmp_path_factory):
    """`rclone serve s3`: a store that accepts conditional headers and ignores them."""
    with RcloneServer(tmp_path_factory.mktemp("rclone"), BUCKET, ACCESS_KEY, SECRET_KEY) as server:
        yield server


@pytest.fixture
def rclone_bucket(rclone):
    return Bucket(_client(rclone.endpoint_url), BUCKET)


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


@pytest.fixture(scope="session")
def bucket(s3):
    """The test bucket, to see what a user would see on S3."""
    return Bucket(_client(s3.endpoint_url), BUCKET)


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
