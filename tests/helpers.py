"""What the tests import: the test server's names, a bucket and project to look at and
run `datakit` in, and small checks on a run's result.

The pytest fixtures that hand these out live in conftest.py.
"""
import json
import os
import signal
import functools
import subprocess
import sys
import time
import uuid
from pathlib import Path

from s3server import die_with_parent, isolated_client, isolated_env

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

VERSIONED = "datakit-versioned"


def _client(endpoint_url: str):
    """A botocore S3 client for a test server, built from nothing but these values."""
    return isolated_client(endpoint_url, ACCESS_KEY, SECRET_KEY)


class Bucket:
    """What is in the test bucket, as keys and bytes."""

    def __init__(self, client, name):
        self.client = client
        self.name = name

    def objects(self, prefix: str, markers: bool = False) -> dict[str, bytes]:
        """{key relative to prefix: bytes} for every object under prefix/: the project's
        data; with ``markers``, its name marker (.datakit/project.json) too."""
        found = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix + "/")
        for page in pages:
            for item in page.get("Contents", []):
                rest = item["Key"][len(prefix) + 1:]
                if rest.startswith(".datakit/") and not markers:
                    continue
                found[rest] = self.client.get_object(Bucket=self.name, Key=item["Key"])["Body"].read()
        return found

    def keys(self, prefix: str, markers: bool = False) -> list[str]:
        """Keys under prefix/ (the name marker only with ``markers``), without reading the objects."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix + "/")
        return [item["Key"] for page in pages for item in page.get("Contents", [])
                if markers or not item["Key"][len(prefix) + 1:].startswith(".datakit/")]

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

    def clone_config_of(self, other: "Project") -> None:
        """This folder as a clone of ``other``'s repository: its project config, byte for byte."""
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_bytes(other.config_path.read_bytes())

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


def make_settings(path="proj", profile=None, endpoint=None):
    """Settings for tests of pure functions: bucket "bkt", folder "proj"."""
    from datakit_data.settings import Settings

    return Settings(bucket="bkt", path=path, profile=profile, endpoint_url=endpoint)


@functools.lru_cache(maxsize=1)
def _page_parser():
    """botocore's session, ListObjectsV2 model and parser factory, made once (0.1 s)."""
    from datakit_data.engine import aws

    botocore = aws.botocore()
    session = botocore.session.Session()
    client = session.create_client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    factory = session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=str)
    return botocore, client.meta.service_model.operation_model("ListObjectsV2"), factory


def read_page(body: bytes, fast: bool) -> dict:
    """A listing page as botocore's S3 client returns it, with or without s3.read_contents."""
    from datakit_data import s3

    botocore, model, factory = _page_parser()
    response = {"status_code": 200, "headers": {}, "body": body}
    customized: dict = {}
    if fast:
        s3.read_contents(response_dict=response, customized_response_dict=customized)
    parsed = factory.create_parser("rest-xml").parse(response, model.output_shape)
    parsed.update(customized)
    botocore.handlers.decode_list_object_v2(parsed=parsed, context={"encoding_type_auto_set": True})
    return parsed
