"""The sync record: what each file was at its last successful push or pull.

It lives in ``.datakit-data/record.json`` in the project folder (outside data/,
ignored by git) and belongs to one S3 location: after s3_bucket, s3_path or the
endpoint change, the old record no longer applies and the next sync starts afresh.
"""
import datetime
import json
import logging
import os
import stat
from sys import intern

from .layout import Layout
from .masking import mask_secrets
from .names import key_problem, printable
from .files import write_json
from .plan import Local, Recorded
from .settings import Settings

log = logging.getLogger(__name__)

#: Version 2 keeps the files as columns (a list per field): 100,000 entries load and
#: save in 0.05 s each, where version 1's object per file took 0.2 s each. Version 1
#: is still read, and the next sync writes version 2.
VERSION = 2
COLUMNS = ("path", *Recorded._fields)


def location(settings: Settings) -> str:
    """The S3 location a record belongs to (credentials in the endpoint left out)."""
    return mask_secrets(f"{settings.endpoint_url or ''} {settings.s3_url}".strip())


def _only(values, *kinds) -> bool:
    """Is every value of exactly these types? (type(), not isinstance: true and false
    are not sizes; set(map()) runs in C, for 100,000 of them.)"""
    return set(map(type, values)) <= set(kinds)


def _columns_problem(files) -> str | None:
    """What is wrong with a version 2 record's files, or None."""
    if type(files) is not dict or set(files) != set(COLUMNS) or not _only(files.values(), list):
        return f'"files" is not an object of the lists {", ".join(COLUMNS)}'
    if len({len(column) for column in files.values()}) > 1:
        return '"files" has lists of different lengths'
    for name, kinds in (("path", (str,)), ("size", (int,)), ("mtime_ns", (int,)), ("ino", (int, type(None))),
                        ("etag", (str,))):
        if not _only(files[name], *kinds):
            return f'the "{name}" list of "files" holds something other than {"texts" if str in kinds else "whole numbers"}'
    if len(set(files["path"])) != len(files["path"]):
        return '"files" names a path twice'
    return None


def _entries_problem(files) -> str | None:
    """What is wrong with a version 1 record's files (an object per file), or None."""
    if not isinstance(files, dict):
        return '"files" is not an object'
    for rel, entry in files.items():
        # (Written out: a record holds an entry per file, 100,000 of them in a large project.)
        if not (type(entry) is dict and type(entry.get("etag")) is str  # noqa: E721
                and type(entry.get("size")) is int and type(entry.get("mtime_ns")) is int  # noqa: E721
                and type(entry.get("ino", 0)) is int):  # noqa: E721
            return f'the entry for "{rel}" lacks a whole size, mtime_ns or a text etag'
    return None


def _read_files(version: int, files) -> tuple[dict[str, Recorded] | None, str | None]:
    """({path: Recorded}, None) from a record's "files", or (None, what is wrong)."""
    if version == 1:
        problem = _entries_problem(files)
        if problem:
            return None, problem
        return {rel: Recorded(e["size"], e["mtime_ns"], e.get("ino"), e["etag"]) for rel, e in files.items()}, None
    problem = _columns_problem(files)
    if problem:
        return None, problem
    # Interned: the scan and the listing hold the same paths as one string each.
    return dict(zip(map(intern, files["path"]), map(Recorded, files["size"], files["mtime_ns"], files["ino"], files["etag"]))), None


class SyncRecord:
    """Per-file state at the last sync, plus when this project last pushed and pulled."""

    def __init__(self, path: str, target: str, files: dict | None = None, last: dict | None = None,
                 exists: bool = False):
        self.path = path
        self.target = target
        self.files = files or {}
        self.last = last or {}
        self.exists = exists
        self.touched: set[str] = set()  # paths set or forgotten since the record was loaded

    @classmethod
    def load(cls, layout: Layout, settings: Settings) -> "SyncRecord":
        path = layout.record
        target = location(settings)
        try:
            # Never waiting on a FIFO (it would hold the lock forever).
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return cls(path, target)
        except OSError as err:
            return cls._damaged(path, target, f"it cannot be read: {err.strerror}")
        try:
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    return cls._damaged(path, target, "not a regular file")
                data = json.loads(fh.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            return cls._damaged(path, target, f"not valid JSON: {err}")
        except RecursionError:
            return cls._damaged(path, target, "nested too deeply to be a sync record")
        except OSError as err:
            return cls._damaged(path, target, f"it cannot be read: {err.strerror}")
        if not isinstance(data, dict) or data.get("version") not in (1, VERSION):
            return cls._damaged(path, target, "not a sync record of this version")
        if data.get("target") != target:
            return cls(path, target)  # another S3 location's record: it does not apply here
        last = data.get("last", {})
        files, problem = _read_files(data["version"], data.get("files"))
        if not problem and (not isinstance(last, dict) or not all(isinstance(v, str) for v in last.values())):
            problem = '"last" is not an object of times'
        if problem:
            return cls._damaged(path, target, problem)
        # A path that can never be a local file (an older version recorded hostile
        # keys) is left out, so that nothing is ever planned for it.
        files = {k: v for k, v in files.items() if not key_problem(k)}
        return cls(path, target, files, last, exists=True)

    @classmethod
    def _damaged(cls, path, target, why) -> "SyncRecord":
        # Treated like no record: every difference becomes a conflict, never a
        # silent overwrite. The next successful sync writes a good one.
        log.warning(
            "Warning: %s is damaged (%s) and is ignored: files that differ on the two sides "
            "are reported as conflicts. The next sync writes a new record.", path, printable(why))
        return cls(path, target)

    def set(self, rel: str, local: Local, etag: str) -> None:
        self.files[rel] = Recorded(local.size, local.mtime_ns, local.ino, etag)
        self.touched.add(rel)

    def forget(self, rel: str) -> None:
        self.files.pop(rel, None)
        self.touched.add(rel)

    def stamp(self, direction: str) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.last[direction] = now.isoformat()

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        columns = list(zip(*self.files.values())) or [()] * len(Recorded._fields)
        write_json(self.path, {
            "version": VERSION, "target": self.target, "last": self.last,
            "files": {"path": list(self.files), **dict(zip(Recorded._fields, columns))},
        }, indent=None)
        self.exists = True
