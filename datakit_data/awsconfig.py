"""The user's AWS config file: what its S3 transfer settings mean for us.

The AWS CLI reads S3 transfer settings only from its config file (nested under
``s3 =`` in the profile's section). For ``max_concurrent_requests`` we give one
run a temporary copy of the user's config file with that one value set for the
profile in use, by the AWS CLI's own config writer; every other line of the
user's file is kept as it is, and the copy is removed when the run ends. ``multipart_threshold`` and
``multipart_chunksize`` shape the ETags S3 gives uploaded files, so comparing a
local file with an object must read them as the AWS CLI does.
"""
import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Mapping

from .plan import MULTIPART_CHUNK, MULTIPART_THRESHOLD
from .settings import Settings

KEY = "max_concurrent_requests"
#: max_concurrent_requests when neither the project (or global) config nor the
#: user's AWS config sets it. Measured (docs/performance.rst): 500 small files push
#: 1.7x faster than with the AWS CLI's 10, and no faster beyond 32; 50 MiB files the same.
DEFAULT_CONCURRENCY = 32


def section_name(profile: str | None) -> str:
    """The config file section that holds a profile's settings."""
    if not profile or profile == "default":
        return "default"
    return f"profile {profile}"


def set_s3_value(path: str, section: str, key: str, value: str) -> None:
    """Set ``s3 = / key = value`` in one section of a config file, every other line kept,
    with the writer `aws configure set` uses."""
    # Imported here: loading awscli costs about 80 ms that most runs never need.
    import awscli  # noqa: F401
    from awscli.customizations.configure.writer import ConfigFileWriter

    ConfigFileWriter().update_config({"__section__": section, "s3": {key: value}}, path)


def user_config_path(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("AWS_CONFIG_FILE") or os.path.join(os.path.expanduser("~"), ".aws", "config")


@contextlib.contextmanager
def concurrency(settings: Settings, environ: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Environment overrides that set S3 concurrency for one AWS CLI run: the config's
    value, else the user's AWS config's own, else DEFAULT_CONCURRENCY."""
    environ = os.environ if environ is None else environ
    value = settings.max_concurrent_requests
    if not value:
        if _users_own_value(settings) is not False:
            yield {}  # the user's AWS config sets it (or cannot be read: the AWS CLI says why)
            return
        value = DEFAULT_CONCURRENCY
    try:
        with open(os.path.expanduser(user_config_path(environ)), encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    profile = settings.profile or environ.get("AWS_PROFILE")
    folder = tempfile.mkdtemp(prefix="datakit-data-")
    try:
        path = os.path.join(folder, "config")
        # The copy may hold credentials, like the original: readable by the user only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        set_s3_value(path, section_name(profile), KEY, str(value))
        yield {"AWS_CONFIG_FILE": path}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _users_own_value(settings: Settings) -> bool | None:
    """Does the user's AWS config set max_concurrent_requests for this profile?
    (None: the file or profile cannot be read.)"""
    # Imported here: loading awscli costs about 80 ms that most runs never need.
    import awscli  # noqa: F401  (serves its own botocore as `botocore`)
    from botocore import exceptions, session

    try:
        s3 = session.Session(profile=settings.profile).get_scoped_config().get("s3")
    except exceptions.BotoCoreError:
        return None
    return isinstance(s3, dict) and KEY in s3


def multipart_sizes(settings: Settings) -> tuple[int, int]:
    """(multipart_threshold, multipart_chunksize) in bytes, as the AWS CLI reads them."""
    # Imported here: loading awscli costs about 80 ms that most runs never need.
    import awscli  # noqa: F401  (serves its own botocore as `botocore`)
    from awscli.customizations.s3.transferconfig import InvalidConfigError, RuntimeConfig
    from botocore import exceptions, session

    try:
        s3 = session.Session(profile=settings.profile).get_scoped_config().get("s3") or {}
        wanted = {k: v for k, v in s3.items() if k in ("multipart_threshold", "multipart_chunksize")}
        sizes = RuntimeConfig().build_config(**wanted)
    except (exceptions.BotoCoreError, InvalidConfigError, ValueError, AttributeError):
        # The AWS CLI refuses such a config itself; until then, its defaults.
        return MULTIPART_THRESHOLD, MULTIPART_CHUNK
    return sizes["multipart_threshold"], sizes["multipart_chunksize"]
