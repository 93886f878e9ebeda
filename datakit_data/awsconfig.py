"""The user's AWS config file: what its S3 transfer settings mean for us.

The AWS CLI reads S3 transfer settings only from its config (nested under ``s3 =``
in the profile's section). ``max_concurrent_requests`` and the transfer client are
set for datakit's command only, by the plugin in the config as the CLI has read it
(engine/plugin.py): the user's file is never edited. AWS CLI v2 loads the plugin
from a copy of the user's file with our ``[plugins]`` lines added (plugin_config).
``multipart_threshold`` and ``multipart_chunksize`` shape the ETags S3 gives
uploaded files, so comparing a local file with an object must read them as the
AWS CLI does.
"""
import os
import re
from typing import Mapping

from .engine import aws
from .settings import Settings

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


def user_config_path(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("AWS_CONFIG_FILE") or os.path.join(os.path.expanduser("~"), ".aws", "config")


#: A section header line of a config file, and a plain ``key = value`` line in one.
_HEADER = re.compile(r"^\[\s*(?P<name>[^\]]*?)\s*\]")
_SETTING = re.compile(r"^(?P<key>[^\s=:][^=:]*?)\s*[=:]\s*(?P<value>.*?)\s*$")
_PATH_KEY = "cli_legacy_plugin_path"


def plugin_config(path: str, folder: str, module: str, environ: Mapping[str, str] | None = None
                  ) -> tuple[str, str | None]:
    """Write to ``path`` a copy of the user's AWS config that makes AWS CLI v2 load
    ``module`` from ``folder`` before any plugin of the user's: ``[plugins]`` gets
    ``cli_legacy_plugin_path = folder`` and ``<module> = <module>`` as its first lines,
    every other line is kept. Returns (path, the user's own cli_legacy_plugin_path,
    which the plugin puts back on the import path for their plugins, or None).

    AWS CLI v2 loads the plugins of ``[plugins]`` only where it names a
    ``cli_legacy_plugin_path``: without one, the user's own entries are left out of
    the copy, so that datakit's command loads exactly what theirs would.

    Raises ValueError if the copy does not parse, as botocore parses config files,
    to the original with exactly those lines added (the user's config wins: the CLI
    then runs with it and without the plugin). The copy may hold credentials, like
    the original: readable by the user only. The user's file is never written."""
    environ = os.environ if environ is None else environ
    original = os.path.expanduser(user_config_path(environ))
    try:
        with open(original, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        lines = []
    except UnicodeDecodeError:
        raise ValueError(f"{original} is not UTF-8 text") from None
    if any(c in folder for c in "\r\n"):
        raise ValueError("the staging folder's path holds a line break")
    ours = [f"{_PATH_KEY} = {folder}", f"{module} = {module}"]
    header = next((i for i, line in enumerate(lines) if (m := _HEADER.match(line)) and m["name"] == "plugins"), None)
    users_path = None
    if header is None:
        copy = [*lines, "", "[plugins]", *ours]
    else:
        end = next((i for i in range(header + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
        kept = []
        for line in lines[header + 1:end]:
            setting = _SETTING.match(line)
            if setting and setting["key"] == _PATH_KEY:
                users_path = setting["value"]
                continue
            kept.append(line)
        if users_path is None:
            kept = [line for line in kept if not line.strip() or line.lstrip().startswith(("#", ";"))]
        copy = [*lines[:header + 1], *ours, *kept, *lines[end:]]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(copy) + "\n")
    try:
        before = aws.parse_config(original) if lines else {}
        after = aws.parse_config(path)
    except aws.botocore().exceptions.BotoCoreError as err:
        raise ValueError(f"the AWS config does not parse: {err}") from None
    plugins = dict(before.get("plugins") or {})
    if users_path is None:
        plugins = {}  # (not loaded by the CLI: see above)
    elif plugins.pop(_PATH_KEY, None) != users_path or module in plugins:
        raise ValueError("its [plugins] section is not one datakit can add to")
    expected = {**before, "plugins": {_PATH_KEY: folder, module: module, **plugins}}
    found = after.get("plugins") or {}
    if after != expected or [k for k in found if k != _PATH_KEY][:1] != [module]:
        raise ValueError("the copy does not read as the original does")
    return path, users_path


def concurrency(settings: Settings) -> tuple[int, bool] | None:
    """The S3 concurrency one AWS CLI run should use, and whether it overrides the
    user's AWS config: the project (or global) config's value always does; else
    DEFAULT_CONCURRENCY, only where the user's AWS config sets none."""
    if settings.max_concurrent_requests:
        return settings.max_concurrent_requests, True
    if _users_own_value(settings) is not False:
        return None  # the user's AWS config sets it (or cannot be read: the AWS CLI says why)
    return DEFAULT_CONCURRENCY, False


def _users_own_value(settings: Settings) -> bool | None:
    """Does the user's AWS config set max_concurrent_requests for this profile?
    (None: the file or profile cannot be read.)"""
    try:
        return KEY in aws.s3_config(settings.profile)
    except aws.botocore().exceptions.BotoCoreError:
        return None


def multipart_sizes(settings: Settings) -> tuple[int, int]:
    """(multipart_threshold, multipart_chunksize) in bytes, as the AWS CLI reads them."""
    try:
        s3 = aws.s3_config(settings.profile)
        wanted = {k: v for k, v in s3.items() if k in ("multipart_threshold", "multipart_chunksize")}
        sizes = aws.transfer_config(wanted)
    except (aws.botocore().exceptions.BotoCoreError, ValueError, AttributeError):
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
