"""Where things live in a project folder. Every path is built from the project root.

    <root>/data/                      the data, synced with s3://<s3_bucket>/<s3_path>/
    <root>/config/datakit-data.json   the project config (in git)
    <root>/config/datakit-data.lock   the exact data of each commit (in git; lockfile.py)
    <root>/.datakit-data/             datakit-data's own state (ignored by git):
        lock                          one push or pull at a time
        running                       which command holds the lock (its pid)
        record.json                   the sync record
        conditions.json               what each store proved of each kind of condition
        engine.json                   whether DATAKIT_DATA_AWS's CLI loads datakit's plugin
        notices.json                  the paragraphs said once per project (a bucket without versions)
        lock-seen.json                config/datakit-data.lock and the record as datakit last wrote them
        rolled-back.json              files `pull --as-of` brought back to an older version
        theirs/data/, theirs.json     S3's versions `datakit data compare` saved, and their ETags
        replaced/<UTC time>/data/     local edits a `pull force` replaced, kept 30 days
        uploads.jsonl                 multipart uploads left on S3, for the next push to continue
        logs/                         the transfer logs of the last runs
        push-<pid>/, pull-<pid>/      staging folders of running transfers
"""
import calendar
import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass

from .exceptions import DatakitDataError

DATA = "data"
STATE = ".datakit-data"
#: The project config, relative to the project root (as messages name it).
PROJECT_CONFIG = os.path.join("config", "datakit-data.json")


@dataclass(frozen=True)
class Layout:
    """The folders and files of one project."""

    root: str

    @property
    def data(self) -> str:
        return os.path.join(self.root, DATA)

    @property
    def config(self) -> str:
        return os.path.join(self.root, PROJECT_CONFIG)

    @property
    def state(self) -> str:
        return os.path.join(self.root, STATE)

    @property
    def lock(self) -> str:
        return os.path.join(self.state, "lock")

    @property
    def running(self) -> str:
        return os.path.join(self.state, "running")

    @property
    def record(self) -> str:
        return os.path.join(self.state, "record.json")

    @property
    def conditions(self) -> str:
        return os.path.join(self.state, "conditions.json")

    @property
    def engine(self) -> str:
        return os.path.join(self.state, "engine.json")

    @property
    def theirs(self) -> str:
        return os.path.join(self.state, "theirs")

    @property
    def theirs_json(self) -> str:
        return os.path.join(self.state, "theirs.json")

    @property
    def replaced(self) -> str:
        return os.path.join(self.state, "replaced")

    @property
    def rolled_back(self) -> str:
        return os.path.join(self.state, "rolled-back.json")

    @property
    def notices(self) -> str:
        return os.path.join(self.state, "notices.json")

    def staging(self, direction: str, pid: int | None = None) -> str:
        """The staging folder of a push or pull run (this process's by default)."""
        return os.path.join(self.state, f"{direction}-{os.getpid() if pid is None else pid}")

    def stale_staging(self) -> list[str]:
        """Staging folders present in the state folder (under the lock: all of dead runs)."""
        try:
            entries = os.listdir(self.state)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in entries:
            kind, _, pid = name.partition("-")
            if kind in ("push", "pull") and pid.isdigit():
                found.append(os.path.join(self.state, name))
        return found


def read_state_file(path: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of a small file of the state folder; b"" when it is missing,
    is not a regular file, or cannot be read. It never follows a link nor waits on a
    FIFO, whoever put one there."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return b""
    try:
        return os.read(fd, limit) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        return b""
    finally:
        os.close(fd)


def state_folder(layout: Layout, folder: str) -> str:
    """A folder of the state folder (theirs/, replaced/), made if missing; refused when it
    is a link or not a folder: what datakit writes or deletes there must stay inside the
    project, whoever planted a link."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    if os.path.islink(folder) or not os.path.isdir(folder) or os.path.islink(layout.state):
        raise DatakitDataError(
            f"{os.path.relpath(folder, layout.root)} is a link or not a folder: datakit-data keeps copies of "
            "files there and would write outside the project. Remove it and run the command again."
        )
    return folder


def read_text_map(path: str, limit: int) -> dict[str, str]:
    """A state file holding one JSON object of texts ({path: ETag}, {notice: time}): its
    text entries; {} when it is missing, unreadable or anything else."""
    try:
        found = json.loads(read_state_file(path, limit) or b"{}")
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


#: Days the local edits a `pull force` replaced are kept in .datakit-data/replaced/.
REPLACED_DAYS = 30
_STAMP = re.compile(r"\d{8}T\d{6}Z-\d+")


def replaced_edits(layout: Layout) -> list[tuple[str, int]]:
    """(folder name, files in it) of each run's local edits kept in .datakit-data/replaced/."""
    try:
        entries = sorted(os.scandir(layout.replaced), key=lambda e: e.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        if _STAMP.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            found.append((entry.name, sum(len(names) for _, _, names in os.walk(entry.path))))
    return found


def prune_replaced(layout: Layout) -> None:
    """Remove the kept local edits older than REPLACED_DAYS (only folders named as we name
    them, and never through a link)."""
    if os.path.islink(layout.replaced) or os.path.islink(layout.state):
        return
    cutoff = time.time() - REPLACED_DAYS * 86400
    for name, _ in replaced_edits(layout):
        try:
            made = calendar.timegm(time.strptime(name[:16], "%Y%m%dT%H%M%SZ"))
        except ValueError:
            continue
        if made < cutoff:
            shutil.rmtree(os.path.join(layout.replaced, name), ignore_errors=True)
