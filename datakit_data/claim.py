"""A project's name in the bucket: claimed at init, listed by `datakit data projects`.

``init`` writes a small marker, ``<s3_path>/.datakit/project.json`` (an id, which is
also written to the project config, the creator, the time and the git remote with any
credentials removed). The marker is written with ``If-None-Match: *``, so when two
people init the same name at once exactly one wins, on a store that honours the
condition. Whether this store does is probed at once on a key of the claimed project
(created twice; the second must be refused); where it does not, init says the guard is
best effort. The ``.datakit/`` folder at the top of s3_path is never synced (see
selection.py), and a marker is checked like any other untrusted input.
"""
import concurrent.futures
import datetime
import json
import subprocess
import uuid

from . import s3
from .engine.aws import botocore
from .exceptions import ConfigError, DatakitDataError
from .masking import without_credentials
from .names import printable
from .settings import Settings

#: The folder of the marker, at the top of s3_path (never synced), and the marker.
PROJECT_MARKER_FOLDER = ".datakit/"
MARKER = PROJECT_MARKER_FOLDER + "project.json"
#: The largest marker read.
MARKER_BYTES = 64 * 1024


def marker_key(s3_path: str) -> str:
    return f"{s3_path}/{MARKER}" if s3_path else MARKER


def new_marker(name: str, creator: str, root: str) -> dict:
    """The marker a new project claims its name with."""
    return {
        "format": 1,
        "id": uuid.uuid4().hex,
        "name": name,
        "created_by": creator,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "git_remote": git_remote(root),
    }


def git_remote(root: str) -> str:
    """The project's git remote (origin), any credentials in it removed; "" without one."""
    try:
        done = subprocess.run(["git", "-C", root, "remote", "get-url", "origin"], capture_output=True, text=True,
                              timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    url = done.stdout.strip() if done.returncode == 0 else ""
    return without_credentials(url) or ""


def read_marker(settings: Settings, s3_path: str) -> dict | None:
    """The marker at s3_path, or None when there is none (or it is not a marker)."""
    exceptions = botocore().exceptions
    try:
        answer = s3.client(settings).get_object(Bucket=settings.bucket, Key=marker_key(s3_path),
                                                Range=f"bytes=0-{MARKER_BYTES - 1}")
        found = json.loads(answer["Body"].read(MARKER_BYTES))
    except exceptions.ClientError as err:
        if str((err.response.get("Error") or {}).get("Code") or "") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise s3.explain_error(err, settings, "check") from err
    except exceptions.BotoCoreError as err:
        raise s3.explain_error(err, settings, "check") from err
    except (ValueError, UnicodeDecodeError):
        found = None
    if not isinstance(found, dict) or not isinstance(found.get("id"), str):
        # Something holds the name, though not a marker this datakit reads: a claim all the same.
        return {"id": "", "name": "(a marker datakit cannot read)"}
    return {k: printable(str(v))[:200] for k, v in found.items() if isinstance(v, (str, int))}


def who(marker: dict) -> str:
    """A marker as a person reads it."""
    return (f'project "{marker.get("name") or "?"}" (created by {marker.get("created_by") or "someone"}, '
            f'{marker.get("created") or "at an unknown time"})')


def enclosing(settings: Settings, s3_path: str) -> tuple[str, dict] | None:
    """A project whose s3_path holds this one (its path, its marker), or None."""
    parts = s3_path.split("/")
    above = ["/".join(parts[:i]) for i in range(1, len(parts))]
    if not above:
        return None
    with concurrent.futures.ThreadPoolExecutor(min(8, len(above))) as pool:
        for path, marker in zip(above, pool.map(lambda p: read_marker(settings, p), above)):
            if marker is not None:
                return path, marker
    return None


def put_marker(settings: Settings, key: str, body: bytes) -> bool:
    """Create key with If-None-Match: *; False when S3 says it exists already."""
    exceptions = botocore().exceptions
    try:
        s3.client(settings).put_object(Bucket=settings.bucket, Key=key, Body=body, IfNoneMatch="*",
                                       ContentType="application/json")
    except exceptions.ClientError as err:
        if str((err.response.get("Error") or {}).get("Code") or "") in ("PreconditionFailed", "412"):
            return False
        raise s3.explain_error(err, settings, "check") from err
    except exceptions.BotoCoreError as err:
        raise s3.explain_error(err, settings, "check") from err
    return True


def claim(settings: Settings, marker: dict) -> tuple[bool, dict | None, bool]:
    """Claim s3_path for this marker: (won, the marker that holds it, whether the store
    proved that it refuses a second claim)."""
    body = json.dumps(marker, indent=2).encode()
    if not put_marker(settings, marker_key(settings.path), body):
        return False, read_marker(settings, settings.path), True
    held = read_marker(settings, settings.path)
    if held is None or held.get("id") != marker["id"]:
        return False, held, False  # another claim landed over ours: a store that ignores the condition
    return True, held, _refuses_second_create(settings, marker["id"])


def _refuses_second_create(settings: Settings, project_id: str) -> bool:
    """Does this store refuse a second If-None-Match: * create of one key? (A probe on a
    key of our own, removed afterwards.)"""
    key = f"{settings.path}/.datakit/probe-{project_id}" if settings.path else f".datakit/probe-{project_id}"
    try:
        put_marker(settings, key, b"probe")
        refused = not put_marker(settings, key, b"probe")
    finally:
        try:
            s3.client(settings).delete_object(Bucket=settings.bucket, Key=key)
        except botocore().exceptions.ClientError:
            pass
    return refused


def check_joined(settings: Settings, project_id: str | None) -> None:
    """A project config with an id must sync with its own claimed path."""
    if not project_id:
        return
    held = read_marker(settings, settings.path)
    if held is not None and held.get("id") != project_id:
        raise ConfigError(
            f"{settings.s3_url} is claimed by {who(held)}, not by this project (its config holds another "
            "project_id): someone made another project with this name. Change s3_path in "
            "config/datakit-data.json, or remove project_id from it to join that project."
        )


#: Projects `datakit data projects` reads at most (a GET of each marker, a listing of each).
MOST_PROJECTS = 1000


def projects(settings: Settings, suffix: str) -> tuple[list[dict], list[str]]:
    """The projects under settings.path (the global s3_path_prefix): (one dict each: path,
    marker, files, bytes, last push; what could not be read). A project lives at
    prefix/NAME/suffix, as init builds s3_path."""
    exceptions = botocore().exceptions
    plain = s3.presigner(settings)
    base = f"{settings.path}/" if settings.path else ""
    folders, unread = [], []
    try:
        for page in plain.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=base, Delimiter="/"):
            folders += [str(p.get("Prefix") or "") for p in page.get("CommonPrefixes") or []]
            if len(folders) > MOST_PROJECTS:
                break
    except exceptions.ClientError as err:
        raise s3.explain_error(err, settings, "list") from err
    except exceptions.BotoCoreError as err:
        raise s3.explain_error(err, settings, "list") from err
    paths = [(folder + suffix.strip("/")).rstrip("/") for folder in folders[:MOST_PROJECTS]]

    def one(path: str) -> dict | None:
        try:
            marker = read_marker(settings, path)
        except DatakitDataError as err:
            unread.append(f"s3://{settings.bucket}/{path}/ ({err.reason or err})")
            return None
        if marker is None:
            return None
        found = {"path": path, "marker": marker, "files": None, "bytes": None, "last": ""}
        try:
            for page in plain.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=path + "/"):
                for item in page.get("Contents") or []:
                    if str(item.get("Key", "")).startswith(f"{path}/{PROJECT_MARKER_FOLDER}"):
                        continue
                    found["files"] = (found["files"] or 0) + 1
                    found["bytes"] = (found["bytes"] or 0) + int(item.get("Size") or 0)
                    found["last"] = max(found["last"], str(item.get("LastModified") or ""))
            found["files"] = found["files"] or 0
            found["bytes"] = found["bytes"] or 0
        except (exceptions.ClientError, exceptions.BotoCoreError) as err:
            unread.append(f"the files of s3://{settings.bucket}/{path}/ ({s3.explain_error(err, settings, 'list').reason})")
        return found

    with concurrent.futures.ThreadPoolExecutor(s3.workers(settings)) as pool:
        listed = [found for found in pool.map(one, paths) if found is not None]
    if len(folders) > MOST_PROJECTS:
        unread.append(f"folders beyond the first {MOST_PROJECTS:,} (name a deeper prefix)")
    return listed, unread
