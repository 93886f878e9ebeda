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

from .layout import Layout
from .masking import mask_secrets
from .names import key_problem, printable
from .files import write_json
from .plan import Local
from .settings import Settings

log = logging.getLogger(__name__)

VERSION = 1


def location(settings: Settings) -> str:
    """The S3 location a record belongs to (credentials in the endpoint left out)."""
    return mask_secrets(f"{settings.endpoint_url or ''} {settings.s3_url}".strip())


def _shape_problem(files, last) -> str | None:
    """What is wrong with a record's contents, or None."""
    if not isinstance(files, dict):
        return '"files" is not an object'
    for rel, entry in files.items():
        # type() is int, not isinstance: true and false are not sizes. (Written out: a
        # record holds an entry per file, 100,000 of them in a large project.)
        if not (type(entry) is dict and type(entry.get("etag")) is str  # noqa: E721
                and type(entry.get("size")) is int and type(entry.get("mtime_ns")) is int):  # noqa: E721
            return f'the entry for "{rel}" lacks a whole size, mtime_ns or a text etag'
    if not isinstance(last, dict) or not all(isinstance(v, str) for v in last.values()):
        return '"last" is not an object of times'
    return None


class SyncRecord:
    """Per-file state at the last sync, plus when this project last pushed and pulled."""

    def __init__(self, path: str, target: str, files: dict | None = None, last: dict | None = None,
                 exists: bool = False):
        self.path = path
        self.target = target
        self.files = files or {}
        self.last = last or {}
        self.exists = exists

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
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return cls._damaged(path, target, "not a sync record of this version")
        if data.get("target") != target:
            return cls(path, target)  # another S3 location's record: it does not apply here
        files, last = data.get("files"), data.get("last", {})
        problem = _shape_problem(files, last)
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
        self.files[rel] = {"size": local.size, "mtime_ns": local.mtime_ns, "ino": local.ino, "etag": etag}

    def forget(self, rel: str) -> None:
        self.files.pop(rel, None)

    def stamp(self, direction: str) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.last[direction] = now.isoformat()

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_json(self.path, {
            "version": VERSION, "target": self.target, "last": self.last, "files": self.files,
        }, indent=None)
        self.exists = True
