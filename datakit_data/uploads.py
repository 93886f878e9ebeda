"""Unfinished multipart uploads: the journal, and what a push may continue.

A multipart upload the AWS CLI gives up (Ctrl-C, SIGTERM, a lost connection, a kill)
is left on S3, and datakit's plugin journals it as it begins, in
``.datakit-data/uploads.jsonl`` (one JSON line each: key, upload id, bucket, and the
file's size, time and inode then). The next push of the same, unchanged file lists
the parts S3 holds and checks each against the local bytes (its ETag against the
MD5 of the same range of the file) before trusting it; the plugin then sends only
the parts that are missing and completes the upload under the same compare-and-swap
condition. A file that changed (or is gone) starts over and its old upload is
aborted, as is any upload of ours older than ``STALE_DAYS``. Uploads are never found
by listing a prefix's multipart uploads (MinIO lists them only by exact key): only
the journal knows them.
"""
import dataclasses
import datetime
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from . import names, s3
from .layout import Layout
from .plan import Local
from .settings import Settings

log = logging.getLogger(__name__)

#: Days after which an unfinished upload of ours is aborted, whatever its file.
STALE_DAYS = 7
#: More than any number of unfinished uploads a project has.
LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Unfinished:
    """One multipart upload left on S3."""

    path: str  # under s3_path
    upload_id: str
    size: int
    mtime_ns: int
    ino: int
    since: str  # when it was journaled (UTC, ISO 8601)
    signature: str = ""  # what the upload was created with (the push's arguments)

    def same_file(self, local: Local | None) -> bool:
        return local is not None and (local.size, local.mtime_ns, local.ino) == (self.size, self.mtime_ns, self.ino)

    def stale(self, now: datetime.datetime) -> bool:
        try:
            then = datetime.datetime.fromisoformat(self.since)
            return now - then > datetime.timedelta(days=STALE_DAYS)
        except (ValueError, TypeError):
            return True  # no time, or one without a zone: not trusted


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Journal:
    """``.datakit-data/uploads.jsonl``: the plugin appends, datakit reads and rewrites it."""

    def __init__(self, layout: Layout, settings: Settings):
        self.path = os.path.join(layout.state, "uploads.jsonl")
        self.settings = settings
        self.others: list[str] = []  # lines of other buckets or folders, kept as they are

    def read(self) -> dict[str, Unfinished]:
        """The unfinished uploads of this bucket and s3_path, newest per path; lines that
        are not whole entries (a kill, a hand edit) are left out."""
        found: dict[str, Unfinished] = {}
        self.others = []
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(LIMIT)
        except OSError:
            return found
        prefix = self.settings.key_prefix
        for line in raw.decode("utf-8", "replace").splitlines():
            try:
                entry = json.loads(line)
                key, upload_id = entry["key"], entry["upload_id"]
                size, mtime_ns, ino = int(entry["size"]), int(entry["mtime_ns"]), int(entry["ino"])
            except (ValueError, KeyError, TypeError, OverflowError):
                continue
            if not isinstance(key, str) or not isinstance(upload_id, str) or not upload_id:
                continue
            if entry.get("bucket") != self.settings.bucket or not key.startswith(prefix):
                self.others.append(line)  # another project's, or this one's before a move: not ours to touch
                continue
            path = key[len(prefix):]
            if names.key_problem(path) or size < 0:
                continue  # not a path of data/: nothing to continue
            found[path] = Unfinished(path, upload_id, size, mtime_ns, ino,
                                     str(entry.get("since") or ""), str(entry.get("signature") or ""))
        return found

    def write(self, entries: Iterable[Unfinished]) -> None:
        """Keep these entries only, and the lines of others (written beside, then renamed)."""
        lines = self.others + [json.dumps({"key": self.settings.key_prefix + e.path, "upload_id": e.upload_id,
                                           "bucket": self.settings.bucket, "size": e.size, "mtime_ns": e.mtime_ns,
                                           "ino": e.ino, "since": e.since, "signature": e.signature})
                               for e in entries]
        try:
            if not lines:
                if os.path.exists(self.path):
                    os.remove(self.path)
                return
            temporary = self.path + ".new"
            with open(temporary, "w", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
            os.replace(temporary, self.path)
        except OSError as err:
            log.debug("Could not rewrite %s: %s", self.path, err)


def _chunk_md5(path: str, offset: int, size: int) -> str | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            found, left = hashlib.md5(usedforsecurity=False), size
            while left:
                block = fh.read(min(left, 1024 * 1024))
                if not block:
                    return None
                found.update(block)
                left -= len(block)
            return found.hexdigest()
    except OSError:
        return None


def held_parts(settings: Settings, unfinished: Unfinished, source: str, part_size: int) -> dict[str, str]:
    """{part number: ETag} of the parts S3 holds of this upload that are exactly the bytes
    of the file at ``source`` in parts of ``part_size``; empty when none can be trusted
    (gone, another part size, ETags that are not MD5s, such as SSE-KMS)."""
    listed = s3.list_parts(settings, unfinished.path, unfinished.upload_id)
    if listed is None:
        return {}
    held = {}
    for number, size, etag in listed:
        start = (number - 1) * part_size
        whole = size == part_size or (start + size == unfinished.size and size < part_size)
        if number < 1 or not whole or start + size > unfinished.size or len(etag) != 32:
            return {}  # parts of another size: start over
        if _chunk_md5(source, start, size) == etag.lower():
            held[str(number)] = etag.lower()
    return held


def settle(layout: Layout, settings: Settings, local: Mapping[str, Local], planned: Iterable[str], *,
           covers: Callable[[str], bool], signature: str) -> dict[str, Unfinished]:
    """Before a push: the journal's uploads that may be continued (their file unchanged,
    planned, and created with this push's arguments). Every other one of ours that this
    push looks at (``covers``) is aborted on S3 and forgotten when its file changed, is
    gone, its arguments differ, or it is older than STALE_DAYS; one S3 would not abort
    stays journaled, and is said. A file with an upload that is kept but not planned now
    is left for later."""
    journal = Journal(layout, settings)
    entries = journal.read()
    if not entries:
        return {}
    planned = set(planned)
    now = _now()
    kept, usable = [], {}
    for path, entry in entries.items():
        if not covers(path):
            kept.append(entry)  # outside what this push looks at: its own push decides
            continue
        if entry.stale(now) or not entry.same_file(local.get(path)) or entry.signature != signature:
            if not s3.abort_upload(settings, path, entry.upload_id):
                log.warning("Could not abort the unfinished upload of data/%s on S3 (it costs storage until it "
                            "is aborted or a lifecycle rule removes it); the next push tries again.",
                            names.printable(path))
                kept.append(entry)
            continue
        kept.append(entry)
        if path in planned:
            usable[path] = entry
    journal.write(kept)
    return usable


def renew(layout: Layout, settings: Settings, paths: Iterable[str]) -> None:
    """These uploads are being continued: their STALE_DAYS count from now."""
    paths = set(paths)
    journal = Journal(layout, settings)
    entries = journal.read()
    if paths & set(entries):
        now = _now().isoformat(timespec="seconds")
        journal.write(dataclasses.replace(e, since=now) if p in paths else e for p, e in entries.items())


def forget(layout: Layout, settings: Settings, paths: Iterable[str]) -> None:
    """Forget the journal's entries of these paths (completed, or started over)."""
    paths = set(paths)
    journal = Journal(layout, settings)
    entries = journal.read()
    if paths & set(entries):
        journal.write(e for p, e in entries.items() if p not in paths)
