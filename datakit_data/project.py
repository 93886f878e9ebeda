"""Setting up a project folder: the project config, data/ and .gitignore.

The project config is built once, at init, from built-in defaults, the global
config and command-line options; placeholders such as ``$YEAR`` in global values
expand here, and ``s3_path_prefix`` / ``s3_path_suffix`` shape ``s3_path``.
"""
import datetime
import getpass
import json
import os
import string
import tempfile

from .exceptions import ConfigError
from .settings import DEFAULT_PROFILE, join_s3_path, normalise_s3_path

#: Folders init keeps out of git: the data itself and datakit-data's own state.
GITIGNORE_ENTRIES = ("data/", ".datakit-data/")


def placeholders(project_name: str, now: datetime.date | None = None, username: str | None = None) -> dict:
    """Values for $YEAR, $MONTH, $DAY, $USERNAME and $PROJECTNAME."""
    now = now or datetime.date.today()
    if username is None:
        try:
            username = getpass.getuser()
        except (KeyError, OSError):
            username = ""
    return {
        "YEAR": f"{now.year:04d}",
        "MONTH": f"{now.month:02d}",
        "DAY": f"{now.day:02d}",
        "USERNAME": username,
        "PROJECTNAME": project_name,
    }


def expand(value: object, values: dict) -> object:
    """Expand $PLACEHOLDERS in a string; other values pass unchanged."""
    if not isinstance(value, str):
        return value
    return string.Template(value).safe_substitute(values)


def project_config(project_name: str, global_config: dict, options: dict, values: dict) -> dict:
    """The project config init writes: defaults < global config < options."""
    glob = {k: expand(v, values) for k, v in global_config.items()}
    if options.get("s3_path") is not None:
        path = normalise_s3_path(options["s3_path"], "--path")
    else:
        path = join_s3_path(
            glob.get("s3_path_prefix") or "", project_name, glob.get("s3_path_suffix") or ""
        )
    config = {
        "aws_user_profile": options.get("aws_user_profile") or glob.get("aws_user_profile") or DEFAULT_PROFILE,
        "s3_bucket": options.get("s3_bucket") or glob.get("s3_bucket") or "",
        "s3_path": path,
    }
    endpoint = options.get("s3_endpoint_url") or glob.get("s3_endpoint_url")
    if endpoint:
        config["s3_endpoint_url"] = endpoint
    return config


def write_json_atomic(path: str, data: object, indent: int | None = 4) -> None:
    """Write JSON so that the file is either complete or not there at all (indented for
    people to read; ``indent=None`` for the sync record, which Python's fast encoder
    writes 10 times sooner)."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".datakit-data-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=indent))
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def ensure_gitignore(root: str, entries: tuple[str, ...] = GITIGNORE_ENTRIES) -> list[str]:
    """Add folders to the project's .gitignore unless listed already; returns those added."""
    path = os.path.join(root, ".gitignore")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read {path}: {err}. Add {', '.join(entries)} to it by hand.")
    existing = {line.strip() for line in text.splitlines()}
    missing = [entry for entry in entries if not existing & _spellings(entry)]
    if missing:
        prefix = "" if not text or text.endswith("\n") else "\n"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(prefix + "".join(f"{entry}\n" for entry in missing))
    return missing


def _spellings(folder: str) -> set[str]:
    """The ways a .gitignore line can name a top-level folder."""
    bare = folder.strip("/")
    return {bare, f"{bare}/", f"/{bare}", f"/{bare}/", f"{bare}/*", f"/{bare}/*"}
