"""The sync record: what each file was at its last successful push or pull.

It lives in ``.datakit-data/record.json`` in the project folder (outside data/,
ignored by git) and belongs to one S3 location: after s3_bucket, s3_path or the
endpoint change, the old record no longer applies and the next sync starts afresh.
"""
import datetime
import json
import os

from .lock import STATE_DIR
from .names import key_problem
from .project import write_json_atomic

RECORD_FILE = "record.json"
VERSION = 1


def location(settings) -> str:
    """The S3 location a record belongs to (credentials in the endpoint left out)."""
    from .aws import mask_secrets

    return mask_secrets(f"{settings.endpoint_url or ''} {settings.s3_url}".strip())


class SyncRecord:
    """Per-file state at the last sync, plus when this project last pushed and pulled."""

    def __init__(self, path: str, target: str, files=None, last=None, exists=False):
        self.path = path
        self.target = target
        self.files = files or {}
        self.last = last or {}
        self.exists = exists

    @classmethod
    def load(cls, root: str, settings) -> "SyncRecord":
        path = os.path.join(root, STATE_DIR, RECORD_FILE)
        target = location(settings)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (FileNotFoundError, ValueError):
            # A damaged record is treated like none: every difference becomes a
            # conflict rather than a silent overwrite.
            return cls(path, target)
        if not isinstance(data, dict) or data.get("version") != VERSION or data.get("target") != target:
            return cls(path, target)
        # A path that can never be a local file (an older version recorded hostile
        # keys) is left out, so that nothing is ever planned for it.
        files = {k: v for k, v in (data.get("files") or {}).items() if not key_problem(k)}
        return cls(path, target, files, data.get("last") or {}, exists=True)

    def set(self, rel: str, local, etag: str) -> None:
        self.files[rel] = {"size": local.size, "mtime_ns": local.mtime_ns, "etag": etag}

    def forget(self, rel: str) -> None:
        self.files.pop(rel, None)

    def stamp(self, direction: str) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.last[direction] = now.isoformat()

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_json_atomic(self.path, {
            "version": VERSION, "target": self.target, "last": self.last, "files": self.files,
        })
        self.exists = True
