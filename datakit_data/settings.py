"""Project config and global config: reading, checking and merging them.

The global config (``~/.datakit/plugins/datakit-data/config.json``) holds defaults
for new projects; the project config (``config/datakit-data.json``) says where this
project's ``data/`` lives on S3. Push and pull read both, with one precedence
order: built-in defaults < global config < project config.
"""
import difflib
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from .exceptions import ConfigError
from .masking import mask_secrets, remember
from .names import printable
from .selection import pattern_problem

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "default"

#: Seconds to wait for a TCP connection: an unreachable endpoint fails fast.
CONNECT_TIMEOUT = 5
#: Seconds to wait for the server to answer (or send the next bytes): a server that
#: accepts connections but never answers fails every command in under a minute.
READ_TIMEOUT = 15
#: Attempts in all, the first included, for every request.
ATTEMPTS = 3
#: Retry policy unless the user's environment sets one.
RETRY_ENV = {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": str(ATTEMPTS)}


def check_text(key: str, value: object, source: str) -> str | None:
    """Text, or None when unset."""
    if value is not None and not isinstance(value, str):
        raise ConfigError(f'{source}: "{key}" must be a string, not {json.dumps(value)}. Fix the file and try again.')
    return value


def check_number(key: str, value: object, source: str) -> int | None:
    """A whole number from 1 to 1000 (JSON number or digits in a string), or None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ConfigError(
            f'{source}: "{key}" must be a whole number from 1 to 1000, not {json.dumps(value)}. '
            "Fix the file and try again."
        )
    return value


def check_patterns(key: str, value: object, source: str) -> tuple[str, ...]:
    """A list of .gitignore patterns (one pattern may be given as a string); () when unset."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [value]
    example = '["*.tmp", "scratch/"]'
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
        raise ConfigError(
            f'{source}: "{key}" must be a list of patterns such as {example}, not {json.dumps(value)}. '
            "Fix the file and try again."
        )
    for pattern in value:
        why = pattern_problem(pattern)
        if why:
            raise ConfigError(
                f'{source}: "{key}" holds "{printable(pattern)}", which is not a .gitignore pattern ({why}). '
                "Fix the file and try again."
            )
    return tuple(value)


def check_bool(key: str, value: object, source: str) -> bool | None:
    """true or false (JSON), or None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # as `datakit config set` writes it
    if not isinstance(value, bool):
        raise ConfigError(f'{source}: "{key}" must be true or false, not {json.dumps(value)}. Fix the file and try again.')
    return value


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: where it may live, its check, its Settings field,
    its default and init option."""

    name: str
    help: str
    check: Callable[[str, object, str], object] = check_text  # (key, value, file) -> the value, when a file is read
    field: str | None = None  # the Settings field it fills (None: it only shapes s3_path at init)
    in_project: bool = True  # may be set in the project config
    in_global: bool = True  # may be set in the global config
    at_runtime: bool = False  # the global value applies at push/pull when the project has none
    patterns: bool = False  # a list of .gitignore patterns; the global and project lists both apply
    default: str | None = None  # written to the global config on first use, and by init when unset
    option: str | None = None  # `datakit data init` option that sets it, written to the project config


#: Every setting of datakit-data. The readers and their checks, Settings,
#: `datakit config`, init's options and what it writes, and docs/configuration.rst
#: (checked by a test) all follow this table.
SETTINGS = (
    Setting("aws_user_profile", "AWS profile from ~/.aws/credentials or ~/.aws/config", field="profile",
            at_runtime=True, default="default", option="--profile"),
    Setting("s3_bucket", "S3 bucket", field="bucket", default="", option="--bucket"),
    Setting("s3_path", "folder in the bucket for data/; default: prefix/project-name/suffix", field="path",
            in_global=False, option="--path"),
    Setting("s3_path_prefix", "folders put before the project name in s3_path, e.g. projects/$YEAR",
            in_project=False, default=""),
    Setting("s3_path_suffix", "folders put after the project name in s3_path, e.g. data",
            in_project=False, default=""),
    Setting("s3_endpoint_url", "endpoint of an S3-compatible store (MinIO, Ceph, R2, SeaweedFS)",
            field="endpoint_url", at_runtime=True, option="--endpoint-url"),
    Setting("max_concurrent_requests", "parallel S3 requests for push and pull (default 32, or your AWS config's own value)",
            check=check_number, field="max_concurrent_requests", at_runtime=True),
    Setting("exclude", "paths in data/ that never sync: a list of .gitignore patterns, e.g. [\"*.tmp\", \"scratch/\"]",
            check=check_patterns, field="exclude", at_runtime=True, patterns=True),
    Setting("project_id", "the id init claimed the project's name with in the bucket (.datakit/project.json)",
            field="project_id", in_global=False),
    Setting("lock_file", "write config/datakit-data.lock, the exact data of each commit (default true)",
            check=check_bool, field="lock_file", at_runtime=True),
)
#: Each setting by its name.
BY_NAME = {s.name: s for s in SETTINGS}
#: Keys a project config may hold.
PROJECT_KEYS = tuple(s.name for s in SETTINGS if s.in_project)
#: Keys the global config may hold; the prefix and suffix only shape s3_path at init.
GLOBAL_KEYS = tuple(s.name for s in SETTINGS if s.in_global)
#: Global keys that still apply at push and pull time when a project leaves them out.
RUNTIME_GLOBAL_KEYS = tuple(s.name for s in SETTINGS if s.at_runtime)
#: What the first `datakit data init` on a machine writes to the global config.
GLOBAL_DEFAULTS = {s.name: s.default for s in SETTINGS if s.in_global and s.default is not None}

#: How to set a project's bucket, and how a default differs (it reaches only projects
#: created after it: people who set it for this project got the same error again).
BUCKET_SET_HINT = (
    'put "s3_bucket": "NAME" in {path} '
    "(`datakit config set datakit-data s3_bucket NAME` sets only the default for projects "
    "created later; `datakit data init --bucket NAME` sets it when a project is created)"
)

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Settings:
    """Where and how one project syncs: the merged configuration."""

    bucket: str
    path: str
    profile: str | None
    endpoint_url: str | None = None
    max_concurrent_requests: int | None = None
    exclude: tuple[str, ...] = ()
    #: Write config/datakit-data.lock at each push and pull (lockfile.py).
    lock_file: bool = True
    #: The id of the marker that claims s3_path for this project (claim.py), or None.
    project_id: str | None = None
    #: `no-sign-request`: every request goes unsigned (a public bucket, no credentials).
    unsigned: bool = False

    @property
    def key_prefix(self) -> str:
        """What every key of data/ starts with: s3_path and a slash, or nothing."""
        return f"{self.path}/" if self.path else ""

    @property
    def s3_url(self) -> str:
        """The S3 location of data/, always ending in a slash."""
        return f"s3://{self.bucket}/{self.key_prefix}"

    @property
    def profile_name(self) -> str:
        """The profile the AWS CLI will use, as a user would name it."""
        return self.profile or os.environ.get("AWS_PROFILE") or DEFAULT_PROFILE


def read_config(path: str, known_keys: Iterable[str] | None = None, *, shown: str | None = None) -> dict | None:
    """Read a JSON config file; None when it does not exist.

    Malformed JSON, a value that is not an object, and a known key's value that
    its setting's check refuses are errors naming the file (and line or key); the
    known keys come back as their checks return them. Unknown keys are warned of,
    with a did-you-mean for near misses. Messages name the file as ``shown``
    (default: its path).
    """
    where = shown or path
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read {where}: {err}. Check the file and try again.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{where} is not valid JSON (line {err.lineno}, column {err.colno}: "
            f"{err.msg}). Fix the file and try again."
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where} must hold a JSON object such as "
            f'{{"s3_bucket": "my-bucket"}}, not a {type(data).__name__}. Fix the file and try again.'
        )
    remember(data.get("s3_endpoint_url"))
    if known_keys is not None:
        for key in list(data):
            if key in known_keys:
                data[key] = BY_NAME[key].check(key, data[key], where)
            else:
                log.warning(unknown_key_message(where, key, known_keys))
    return data


def unknown_key_message(path: str, key: str, known_keys: Iterable[str]) -> str:
    """A warning for an unknown config key, suggesting the nearest known one."""
    close = difflib.get_close_matches(key, known_keys, n=1, cutoff=0.75)
    hint = f' Did you mean "{close[0]}"?' if close else f" Known keys: {', '.join(known_keys)}."
    return f'Warning: {path}: unknown key "{key}" is ignored.{hint}'


def normalise_s3_path(path: str, source: str) -> str:
    """Strip outer slashes from an S3 path and refuse ones S3 would misread."""
    if "://" in path:
        raise ConfigError(
            f'{source}: s3_path "{path}" must be a path inside the bucket, not a URL. '
            "Put the bucket in s3_bucket and the rest in s3_path."
        )
    stripped = path.strip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        if segment in ("", ".", ".."):
            raise ConfigError(
                f'{source}: s3_path "{path}" has an empty, "." or ".." segment. '
                'Write it as plain folder names, e.g. "projects/2017/my-project".'
            )
    if any(c in stripped for c in "*?[]"):
        raise ConfigError(
            f'{source}: s3_path "{path}" holds one of * ? [ ], which the AWS CLI reads as '
            "wildcards. Use folder names without them."
        )
    return stripped


def join_s3_path(*parts: str) -> str:
    """Join path pieces with single slashes, dropping empty pieces."""
    return "/".join(seg for part in parts for seg in (part or "").split("/") if seg)


def check_bucket_name(bucket: str, source: str) -> str:
    """Refuse a bucket name that S3 would reject, with a hint for the common slips."""
    if bucket.startswith("s3://"):
        bare = bucket[len("s3://"):].split("/")[0]
        raise ConfigError(
            f'{source}: s3_bucket "{bucket}" must be a bare bucket name. '
            f'Drop the "s3://" (and any path): "{bare}".'
        )
    if not _BUCKET_RE.match(bucket) or ".." in bucket or _IP_RE.match(bucket):
        raise ConfigError(
            f'{source}: s3_bucket "{bucket}" is not a valid S3 bucket name. Use 3-63 '
            "lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit."
        )
    return bucket


def check_endpoint_url(value: object, source: str) -> str | None:
    """An http(s) URL with a host, spaces around it removed; None when unset."""
    if not value or not value.strip():
        return None
    url = value.strip()
    if not re.match(r"^https?://[^/\s?#]+", url, re.IGNORECASE) or any(c.isspace() for c in url):
        raise ConfigError(
            f'{source}: "s3_endpoint_url" must be a URL starting with http:// or https://, such as '
            f'"https://s3.example.org", not "{printable(mask_secrets(url))}". Fix it and try again.'
        )
    return url


def merge(global_config: dict, project_config: dict) -> dict:
    """Global runtime defaults overlaid by the project config; pattern lists of both apply."""
    merged = {k: v for k, v in global_config.items() if k in RUNTIME_GLOBAL_KEYS}
    # null in the project config means "not set here", as if the key were absent.
    merged.update({k: v for k, v in project_config.items() if v is not None})
    for setting in SETTINGS:
        if setting.patterns:  # checked when read: tuples
            both = (*(global_config.get(setting.name) or ()), *(project_config.get(setting.name) or ()))
            if both:
                merged[setting.name] = both
    return merged


def settings_from(merged: dict, source: str) -> Settings:
    """Turn a merged config (each value checked when its file was read) into Settings,
    refusing a location that cannot work: no bucket or path, or ones S3 would misread."""
    bucket = merged.get("s3_bucket") or ""
    if not bucket:
        raise ConfigError(f"No S3 bucket set for this project. To fix it, {BUCKET_SET_HINT.format(path=source)}.")
    if "s3_path" not in merged or merged["s3_path"] is None:
        raise ConfigError(
            f'{source} has no "s3_path". Add the folder in the bucket for this '
            'project, e.g. "s3_path": "my-project".'
        )
    fields = {s.field: merged.get(s.name) for s in SETTINGS if s.field}
    fields["bucket"] = check_bucket_name(bucket, source)
    fields["path"] = normalise_s3_path(merged["s3_path"], source)
    fields["endpoint_url"] = check_endpoint_url(fields["endpoint_url"], source)
    # "default" is what the AWS CLI uses anyway; naming it breaks env-var credentials.
    if fields["profile"] in ("", DEFAULT_PROFILE):
        fields["profile"] = None
    fields["exclude"] = tuple(fields["exclude"] or ())
    fields["lock_file"] = fields["lock_file"] is not False
    return Settings(**fields)
