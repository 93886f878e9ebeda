"""The user's AWS config file: what its S3 transfer settings mean for us.

The AWS CLI reads S3 transfer settings only from its config (nested under ``s3 =``
in the profile's section). For ``max_concurrent_requests``, the bundled AWS CLI
gets the value in its own process, in the config it has read (see
aws_cli._LAUNCHER): the user's file is never copied nor edited. Another AWS CLI
(DATAKIT_DATA_AWS) gets a copy of the user's file with that one value set by the
AWS CLI's own config writer, used only if it reads as the original but for that
value. ``multipart_threshold`` and
``multipart_chunksize`` shape the ETags S3 gives uploaded files, so comparing a
local file with an object must read them as the AWS CLI does.
"""
import contextlib
import logging
import os
from types import ModuleType
from typing import Iterator, Mapping

from .settings import Settings

log = logging.getLogger(__name__)


def botocore() -> ModuleType:
    """The botocore that the bundled awscli carries, with the submodules we use.

    awscli 1.44+ carries its own botocore and, once imported, serves it as the
    top-level `botocore` (its modules use that name, so their classes do too).
    Imported when first needed: loading awscli costs about 80 ms that most runs
    never need.
    """
    import awscli  # noqa: F401
    import botocore as served
    import botocore.config  # noqa: F401
    import botocore.configloader  # noqa: F401
    import botocore.exceptions  # noqa: F401
    import botocore.session  # noqa: F401

    # The CLI is quiet about where it found credentials; so are we.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    return served

#: The AWS CLI's defaults for when an upload goes in parts, and how big each part is
#: (``multipart_threshold`` / ``multipart_chunksize`` under ``s3 =`` in ~/.aws/config).
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
#: S3's limits on parts: at most 10,000 of them, each 5 MiB to 5 GiB.
MAX_PARTS = 10_000
MIN_PART, MAX_PART = 5 * 1024 * 1024, 5 * 1024 * 1024 * 1024

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
    botocore()
    from awscli.customizations.configure.writer import ConfigFileWriter

    ConfigFileWriter().update_config({"__section__": section, "s3": {key: value}}, path)


def user_config_path(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("AWS_CONFIG_FILE") or os.path.join(os.path.expanduser("~"), ".aws", "config")


def concurrency(settings: Settings) -> tuple[int, bool] | None:
    """The S3 concurrency one AWS CLI run should use, and whether it overrides the
    user's AWS config: the project (or global) config's value always does; else
    DEFAULT_CONCURRENCY, only where the user's AWS config sets none."""
    if settings.max_concurrent_requests:
        return settings.max_concurrent_requests, True
    if _users_own_value(settings) is not False:
        return None  # the user's AWS config sets it (or cannot be read: the AWS CLI says why)
    return DEFAULT_CONCURRENCY, False


@contextlib.contextmanager
def config_copy(settings: Settings, folder: str, environ: Mapping[str, str] | None = None
                ) -> Iterator[dict[str, str]]:
    """For another AWS CLI (DATAKIT_DATA_AWS), which only reads its config file:
    environment overrides pointing it at a copy of the user's config with the
    concurrency set, in ``folder`` (our staging folder, which the next run removes
    if this one is killed). The copy is used only if it reads exactly as the user's
    file does but for that one value; else nothing is overridden (noted in the log)."""
    environ = os.environ if environ is None else environ
    wanted = concurrency(settings)
    if wanted is None:
        yield {}
        return
    original = os.path.expanduser(user_config_path(environ))
    path = os.path.join(folder, "aws-config")
    try:
        try:
            with open(original, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            text = ""
        profile = settings.profile or environ.get("AWS_PROFILE")
        # The copy may hold credentials, like the original: readable by the user only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        set_s3_value(path, section_name(profile), KEY, str(wanted[0]))
        if not _reads_the_same(original if text else None, path, section_name(profile), wanted[0]):
            raise ValueError("the copy does not read as the original does")
    except Exception as err:  # noqa: BLE001  whatever the writer makes of a file, the user's file wins
        log.info("Leaving S3 concurrency to the AWS CLI's config (%s): %s", KEY, err)
        with contextlib.suppress(OSError):
            os.unlink(path)
        yield {}
        return
    try:
        yield {"AWS_CONFIG_FILE": path}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _reads_the_same(original: str | None, copy: str, section: str, value: int) -> bool:
    """Does the copy parse, as botocore parses config files, to the original but for
    our one value under ``s3 =`` in ``section``?"""
    parse = botocore().configloader.raw_config_parse
    before = parse(original) if original else {}
    after = parse(copy)
    s3 = after.get(section, {}).get("s3")
    if not isinstance(s3, dict) or s3.get(KEY) != str(value):
        return False
    expected = {name: dict(values) for name, values in before.items()}
    ours = expected.setdefault(section, {})
    nested = ours.get("s3", {})
    if not isinstance(nested, dict):
        return False
    ours["s3"] = {**nested, KEY: str(value)}
    return after == expected


def _users_own_value(settings: Settings) -> bool | None:
    """Does the user's AWS config set max_concurrent_requests for this profile?
    (None: the file or profile cannot be read.)"""
    served = botocore()
    try:
        s3 = served.session.Session(profile=settings.profile).get_scoped_config().get("s3")
    except served.exceptions.BotoCoreError:
        return None
    return isinstance(s3, dict) and KEY in s3


def multipart_sizes(settings: Settings) -> tuple[int, int]:
    """(multipart_threshold, multipart_chunksize) in bytes, as the AWS CLI reads them."""
    served = botocore()
    from awscli.customizations.s3.transferconfig import InvalidConfigError, RuntimeConfig

    try:
        s3 = served.session.Session(profile=settings.profile).get_scoped_config().get("s3") or {}
        wanted = {k: v for k, v in s3.items() if k in ("multipart_threshold", "multipart_chunksize")}
        sizes = RuntimeConfig().build_config(**wanted)
    except (served.exceptions.BotoCoreError, InvalidConfigError, ValueError, AttributeError):
        # The AWS CLI refuses such a config itself; until then, its defaults.
        return MULTIPART_THRESHOLD, MULTIPART_CHUNK
    return sizes["multipart_threshold"], sizes["multipart_chunksize"]


def part_size(file_size: int, chunk: int = MULTIPART_CHUNK) -> int:
    """The part size the AWS CLI really uses for a file: the chunk size, doubled until
    the file fits in S3's 10,000 parts, kept between 5 MiB and 5 GiB."""
    size = chunk
    while -(-file_size // size) > MAX_PARTS:
        size *= 2
    return min(max(size, MIN_PART), MAX_PART)
