"""Setting up a project folder (`datakit data init`): the project config, data/ and .gitignore.

The project config is built once, at init, from built-in defaults, the global
config and command-line options; placeholders such as ``$YEAR`` in global values
expand here, and ``s3_path_prefix`` / ``s3_path_suffix`` shape ``s3_path``.
"""
import datetime
import getpass
import os
import string
import subprocess

from typing import Callable

from . import claim, s3, versions
from .exceptions import ConfigError, DatakitDataError
from .failures import shown_endpoint
from .files import write_json
from .layout import PROJECT_CONFIG, Layout
from .masking import mask_secrets, remember
from .settings import (
    BUCKET_SET_HINT, SETTINGS, check_bucket_name, join_s3_path, merge, normalise_s3_path, settings_from,
)

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
    """The project config init writes: each setting that has an init option, from the
    option, else the global config (placeholders expanded), else its default; s3_path
    by default prefix/project-name/suffix. Unset settings without a default are left out."""
    glob = {k: expand(v, values) for k, v in global_config.items()}
    config = {}
    for setting in SETTINGS:
        if not setting.option:
            continue
        if setting.name != "s3_path":
            value = options.get(setting.name) or glob.get(setting.name) or setting.default
        elif options.get("s3_path") is not None:
            value = normalise_s3_path(options["s3_path"], setting.option)
        else:
            value = join_s3_path(glob.get("s3_path_prefix") or "", project_name, glob.get("s3_path_suffix") or "")
        if value is not None:
            config[setting.name] = value
    return config


def initialise(layout: Layout, global_config: dict, options: dict, *, global_path: str,
               say: Callable[[str], None]) -> None:
    """`datakit data init`: data/, the project config (never overwritten) and .gitignore.

    ``options`` are init's, by setting name (plus ``existing``: join an s3_path that
    already holds data); ``global_path`` names the global config in messages.
    """
    remember(options.get("s3_endpoint_url"))
    if options.get("s3_bucket"):
        check_bucket_name(options["s3_bucket"], "--bucket")
    config_path = layout.config
    if os.path.exists(config_path):
        given = [s.option for s in SETTINGS if s.option and options.get(s.name)]
        say(f"{PROJECT_CONFIG} already exists; left unchanged. Edit it to change settings.")
        if given:
            say(f"Not applied: {', '.join(given)}.")
        config = None
    else:
        name = os.path.basename(os.path.abspath(layout.root))
        config = project_config(name, global_config, options, placeholders(name))
        if config["s3_bucket"]:
            check_bucket_name(config["s3_bucket"], global_path)
            claimed = _check_path(config, global_config, say, joining=bool(options.get("existing")), root=layout.root)
            if claimed:
                config["project_id"] = claimed
    os.makedirs(layout.data, exist_ok=True)
    if config is not None:
        os.makedirs(os.path.dirname(config_path), exist_ok=True)
        write_json(config_path, config)
        say(f"Created data/ and {PROJECT_CONFIG}:")
        for key, value in config.items():
            say(f"  {key}: {mask_secrets(value)}")
    added = ensure_gitignore(layout.root)
    if added:
        say(f"Added {' and '.join(added)} to .gitignore.")
    tracked = tracked_by_git(layout.root)
    if tracked:
        say(f"data/ is tracked by git ({tracked} file{'s' if tracked != 1 else ''}), which .gitignore does not "
            "undo: run `git rm -r --cached data` and commit, so git stops tracking the data (the files stay "
            "on disk).")
    if config is not None and not config["s3_bucket"]:
        say(f"Next: no S3 bucket is set yet; {BUCKET_SET_HINT.format(path=PROJECT_CONFIG)}.")


def _check_path(config: dict, global_config: dict, say: Callable[[str], None], joining: bool, root: str) -> str | None:
    """Refuse a bucket the server says does not exist, an s3_path inside another project's,
    and one that already holds objects unless the user joins it; claim the name (see
    claim.py). Returns the project id the config takes (None when it could not check)."""
    settings = settings_from(merge(global_config, config), PROJECT_CONFIG)
    try:
        above = claim.enclosing(settings, settings.path)
        held = claim.read_marker(settings, settings.path)
        in_use = s3.has_objects(settings)
    except DatakitDataError as err:
        if err.kind == "no bucket":
            raise ConfigError(
                f'Bucket "{settings.bucket}" does not exist on {shown_endpoint(settings)}: check the name '
                "(--bucket, or s3_bucket in the global config) or create the bucket, then run init again. "
                "Nothing was written."
            ) from None
        reason = err.reason or str(err)
        say(f"Could not check whether {mask_secrets(settings.s3_url)} is already in use: "
            f"{reason.rstrip('.')}. Check it before your first push.")
        return None
    if above is not None:
        raise ConfigError(
            f"{settings.s3_url} is inside s3://{settings.bucket}/{above[0]}/, the {claim.who(above[1])}: a project "
            "inside another would sync its files twice. Choose another folder with `--path`. Nothing was written."
        )
    if held is not None:
        if not joining:
            raise ConfigError(
                f"{settings.s3_url} is the {claim.who(held)}. Choose another folder with `--path`, or run "
                "`datakit data init --existing` to join it. Nothing was written."
            )
        return held["id"]
    if in_use and not joining:
        held = claim.read_marker(settings, settings.path)  # claimed while this init looked?
        if held is not None:
            raise ConfigError(
                f"{settings.s3_url} was just claimed by the {claim.who(held)}. Choose another folder "
                "with `--path`, or run `datakit data init --existing` to join it. Nothing was written."
            )
        raise ConfigError(
            f"{settings.s3_url} already holds data, perhaps another project with the same name. "
            "Choose another folder with `--path`, or run `datakit data init --existing` to join it "
            "(and claim its name)."
        )
    name = os.path.basename(os.path.abspath(root))
    marker = claim.new_marker(name, versions.pusher(root), root)
    won, holder, proven = claim.claim(settings, marker)
    if not won:
        raise ConfigError(
            f"{settings.s3_url} was just claimed by the {claim.who(holder or {})}. Choose another folder "
            "with `--path`, or run `datakit data init --existing` to join it. Nothing was written."
        )
    if not proven:
        say(f"Claimed {settings.s3_url} for this project, but this store does not refuse a second claim of "
            "one name (it ignores If-None-Match): the guard against two projects of one name is best effort here.")
    return marker["id"]


def tracked_by_git(root: str) -> int:
    """How many files in data/ git tracks (0 when git is missing or this is no git work tree)."""
    try:
        listed = subprocess.run(["git", "-C", root, "ls-files", "-z", "--", "data"], capture_output=True,
                                timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return 0
    return listed.stdout.count(b"\0") if listed.returncode == 0 else 0


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
