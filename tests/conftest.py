"""Shared fixtures: one SeaweedFS server per test session, an isolated home per test.

Every test that runs `datakit` does so as a subprocess with HOME, DATAKIT_HOME,
AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE pointing into its own temporary
folder, so no test reads or writes a real home.
"""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from s3server import S3Server  # noqa: E402

BUCKET = "datakit-test"
ACCESS_KEY = "AKIDTESTTEST"
SECRET_KEY = "test-secret-key-not-real"
DATAKIT = str(Path(sys.executable).parent / "datakit")

# Variables from the outer environment that would change what the AWS CLI does.
_DROPPED = ("AWS_", "DATAKIT_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """The S3 server for the whole test session."""
    server = S3Server(tmp_path_factory.mktemp("weed"), BUCKET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _client(endpoint_url: str):
    """A botocore S3 client for a test server."""
    import awscli  # noqa: F401  (1.44+ serves its own botocore as `botocore`)
    from botocore import session as botocore_session

    return botocore_session.get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    )


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

    def __init__(self, root: Path, endpoint_url: str):
        self.root = root
        self.datakit_home = root / ".datakit"
        self.aws_config = root / ".aws" / "config"
        self.aws_credentials = root / ".aws" / "credentials"
        self.endpoint_url = endpoint_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
        self.env.update({
            "HOME": str(root),
            "DATAKIT_HOME": str(self.datakit_home),
            "AWS_CONFIG_FILE": str(self.aws_config),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.aws_credentials),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            # Never ask a cloud metadata service for credentials: loopback only.
            "AWS_EC2_METADATA_DISABLED": "true",
            # A safety net: anything not on loopback goes to a dead proxy, never out.
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
        })

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

    def run(self, *args: str, env=None, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        """Run the installed `datakit` here, with no terminal on stdin."""
        full_env = dict(self.home.env)
        full_env.update(env or {})
        return subprocess.run(
            [DATAKIT, *args], cwd=self.root, env=full_env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout, **kwargs,
        )


@pytest.fixture
def home(tmp_path, s3):
    return Home(tmp_path / "home", s3.endpoint_url)


@pytest.fixture
def project(tmp_path, home):
    """An empty project folder with a unique name (so a unique s3_path)."""
    return Project(tmp_path / f"project-{uuid.uuid4().hex[:10]}", home)


@pytest.fixture
def colleague(tmp_path, home, project):
    """A second checkout of the same project, on another machine (same s3_path)."""
    other = Project(tmp_path / "colleague" / project.name, home)
    return other


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def assert_clean_error(result: subprocess.CompletedProcess) -> str:
    """A user error: non-zero exit, no traceback. Returns the combined output."""
    text = output(result)
    assert result.returncode != 0, text
    assert "Traceback" not in text, text
    return text
