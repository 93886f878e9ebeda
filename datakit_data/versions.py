"""Versions kept by the bucket: whether it keeps them, who pushed each, the history.

Buckets with versioning on (AWS S3, SeaweedFS, MinIO, Ceph, R2) keep every
version of every object and mark deletions instead of forgetting. datakit-data
keeps the bucket a plain mirror of data/ and reads the versions when asked:
``datakit data history`` lists them. Push records who pushed each file (git's
``user.name``, else the login name) as the object's ``pushed-by`` metadata.
"""
import concurrent.futures
import datetime
import getpass
import json
import subprocess
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from . import s3
from .exceptions import FlagError, SyncError
from .names import printable
from .plan import Remote
from .settings import Settings

#: Object metadata that names who pushed a version.
PUSHED_BY = "pushed-by"
#: Rows `history` shows unless told otherwise.
DEFAULT_LIMIT = 50


def pusher(root: str) -> str:
    """Who is pushing: git's user.name for this project when set, else the login name."""
    try:
        done = subprocess.run(["git", "-C", root, "config", "user.name"], capture_output=True, text=True,
                              timeout=5, stdin=subprocess.DEVNULL)
        name = done.stdout.strip() if done.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        name = ""
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):
            name = ""
    return name


def metadata_options(name: str) -> list[str]:
    """``--metadata`` for `aws s3 sync`: the pusher's name, percent-encoded (headers are ASCII)."""
    if not name:
        return []
    # Header values are ASCII; spaces too are encoded (some servers sign runs of them
    # wrongly), and the name is cut short of S3's 2 KB metadata limit.
    return ["--metadata", json.dumps({PUSHED_BY: urllib.parse.quote(name[:200], safe=",.'@-_()")})]


def unversioned_hint(settings: Settings) -> str:
    """How a bucket owner turns versioning on."""
    return (
        f"A bucket owner can turn versioning on: aws s3api put-bucket-versioning --bucket {settings.bucket} "
        "--versioning-configuration Status=Enabled"
    )


@dataclass(frozen=True)
class Version:
    """One version of one object, or a deletion."""

    path: str
    version_id: str
    time: str
    size: int
    deleted: bool
    latest: bool
    etag: str = ""
    pushed_by: str = ""


def history(settings: Settings, under: str = "", exact: str | None = None,
            limit: int = DEFAULT_LIMIT, keep: Callable[[str], bool] | None = None) -> tuple[list[Version], int]:
    """(the newest ``limit`` versions and deletions under s3_path/under, newest first; how many
    there are in all). ``exact``: only that file's; ``keep``: only the paths it keeps."""
    _require_versions(settings, "there is no history to show")
    listed = s3.list_versions(settings, exact or under)  # one file: only its own versions
    # Newest first. Times can tie (one second apart at most on some servers): then the
    # current one, then the server's order, which lists each key's versions newest first.
    order = {id(v): i for i, v in enumerate(listed)}
    found = [v for v in listed if (exact is None or v["path"] == exact) and (keep is None or keep(v["path"]))]
    found.sort(key=lambda v: (v["time"], v["latest"], -order[id(v)]), reverse=True)
    shown = found[:limit]
    names = pushers(settings, [(v["path"], v["version_id"]) for v in shown if not v["deleted"]])
    return [Version(**v, pushed_by=names.get((v["path"], v["version_id"]), "")) for v in shown], len(found)


def _require_versions(settings: Settings, why: str) -> None:
    """Refuse when the bucket keeps no versions, or will not say whether it does."""
    state = s3.versioning(settings)
    if state == "":
        raise SyncError(f"Bucket {settings.bucket} keeps no versions, so {why}. {unversioned_hint(settings)}")
    if state is None:
        raise SyncError(
            f"Bucket {settings.bucket} does not say whether it keeps versions (reading its versioning needs "
            f"s3:GetBucketVersioning), so {why}. Ask the bucket owner for that permission."
        )


def pushers(settings: Settings, wanted: list[tuple[str, str | None]]) -> dict:
    """{(path, version id): who pushed it} from each version's metadata (HEAD requests, in
    parallel); a version id of None: the current version."""
    if not wanted:
        return {}
    with concurrent.futures.ThreadPoolExecutor(min(s3.workers(settings), len(wanted))) as pool:
        found = pool.map(lambda pv: s3.object_metadata(settings, *pv).get(PUSHED_BY, ""), wanted)
        return {pv: urllib.parse.unquote(name) for pv, name in zip(wanted, found)}


def when(stamp: str) -> str:
    """An object's time as S3 sent it, for people: "2026-12-05 10:02 UTC"."""
    moment = s3.seconds(stamp) if stamp else None
    if moment is None:
        return "at a time S3 does not say"
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class AsOf:
    """`pull --as-of`: a moment (seconds since the epoch) or one file's version id."""

    text: str
    moment: float | None = None
    version_id: str | None = None


def parse_as_of(text: str, one_file: bool) -> AsOf:
    """--as-of WHEN: an ISO date (the end of that day), an ISO date and time (local time
    unless a zone is given), or, with one file, a version id."""
    when = text.strip()
    try:
        day = datetime.date.fromisoformat(when)
    except ValueError:
        day = None
    if day is not None:  # everything pushed that day counts
        end = datetime.datetime.combine(day, datetime.time.max).astimezone()
        return AsOf(text, moment=end.timestamp())
    try:
        moment = datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is not None:
        if moment.tzinfo is None:
            _check_local_time(moment, text)
            moment = moment.astimezone()  # local time
        return AsOf(text, moment=moment.timestamp())
    if one_file and when and when.isprintable() and " " not in when:
        return AsOf(text, version_id=when)
    raise FlagError(
        f'--as-of "{printable(text)}" is not a date (2026-11-14), a date and time (2026-11-14T15:30, '
        "local time unless a zone is given) or, with one file, a version id from `datakit data history`."
    )


def _check_local_time(moment: datetime.datetime, text: str) -> None:
    """Refuse a local time that a daylight-saving change makes happen twice, or never."""
    times = {moment.replace(fold=fold).timestamp() for fold in (0, 1)}
    if len(times) == 1:
        return
    real = [t for t in sorted(times) if datetime.datetime.fromtimestamp(t).replace(tzinfo=None) == moment]
    offsets = sorted({datetime.datetime.fromtimestamp(t).astimezone().strftime("%z") for t in times})
    zones = " or ".join(f"{printable(text.strip())}{o[:3]}:{o[3:]}" for o in offsets)
    how = ("happens twice here (the clocks went back)" if len(real) == 2
           else "never happens here (the clocks went forward)")
    raise FlagError(f'--as-of "{printable(text)}" {how}: add the zone you mean, e.g. {zones}.')


def choose_at(listed: list[dict], moment: float) -> dict[str, dict]:
    """{path: the version or deletion that was current at moment}, from a version listing."""
    chosen, when = {}, {}
    for v in listed:
        t = s3.seconds(v["time"])
        if t is None:
            raise SyncError(f"S3 gave a time datakit-data cannot read for data/{printable(v['path'])}: "
                            f"{printable(v['time'])}. Use a version id with one file instead.")
        if t > moment:
            continue
        # Each key's versions come newest first, deletions apart: of equal times (S3 times
        # can have whole seconds) the current one wins, else the first listed.
        if v["path"] not in when or t > when[v["path"]] or (t == when[v["path"]] and v["latest"]):
            chosen[v["path"]], when[v["path"]] = v, t
    return chosen


def state_at(settings: Settings, under: str, as_of: AsOf, exact: str | None = None) -> dict[str, tuple[Remote, str]]:
    """{path: (the object as it was, its version id)} under s3_path/under at that moment
    (or that one version); paths deleted or not yet there then are left out."""
    _require_versions(settings, "there is no earlier state to pull")
    listed = s3.list_versions(settings, exact or under)
    if as_of.version_id is not None:
        match = [v for v in listed if v["version_id"] == as_of.version_id and v["path"] == exact]
        if not match:
            raise FlagError(
                f"--as-of {printable(as_of.version_id)}: data/{printable(exact or '')} has no such version. "
                f"`datakit data history data/{printable(exact or '')}` lists them."
            )
        chosen = {match[0]["path"]: match[0]}
    else:
        chosen = choose_at(listed, as_of.moment)
    return {path: (Remote(v["size"], v["etag"], v["time"]), v["version_id"])
            for path, v in chosen.items() if not v["deleted"] and (exact is None or path == exact)}
