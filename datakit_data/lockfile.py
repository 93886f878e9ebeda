"""The lock file: the exact data a commit used, for archives.

``config/datakit-data.lock`` is written by every push and pull and is meant to be
committed with the code. It is text, one line per file, sorted by path, with a blank line
between files, so that git merges two colleagues' changes to different files on its
own (git takes changes to neighbouring lines as one conflict)::

    # datakit-data lock, format 1: the data of this commit. Commit it with your code.
    # bucket: newsroom-data
    # s3_path: projects/budget

    clean/results.csv	5120	9b2cf535f27731c974343645a3985328	3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY	4a5b...

    raw/survey.csv	812	d41d8cd98f00b204e9800998ecf8427e	-	e3b0...

Each line: the path inside data/, its size, the object's ETag, the VersionId S3
returned for our own upload or download (``-`` where the bucket keeps no versions or
none was answered) and the SHA-256 of the bytes, which checks them whatever the store
says. Version ids come only from S3's answers to our transfers and from the lock
itself, never from listing versions.

The lock is untrusted input like any object key: a line that is not five fields of
the right shapes, a path that could not be a file in data/, or git's conflict markers
are refused by name and line.
"""
import bisect
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple

from .exceptions import ConfigError
from .files import written_beside
from .layout import Layout, read_state_file
from .names import key_problem, printable
from .plan import local_moved

FORMAT = 1
#: The lock, relative to the project root (as messages name it).
LOCK = os.path.join("config", "datakit-data.lock")
HEADER = f"# datakit-data lock, format {FORMAT}: the data of this commit. Commit it with your code."
#: The largest lock read (100,000 files take about 15 MB).
MAX_BYTES = 256 * 1024 * 1024
#: The longest line taken: a path of at most 1,024 bytes and four short fields.
MAX_LINE = 2048

_ETAG = re.compile(r"[0-9a-fA-F]{32}(-[0-9]{1,5})?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# What S3 and its kin use in a version id: letters, digits and . _ + = / -; "null" names
# the version an object had before versioning was turned on.
_VERSION = re.compile(r"[A-Za-z0-9._+=/-]{1,1024}")
_MARKERS = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")
#: Every well-formed entry line of a lock (the fields one by one say what is wrong with another).
_LINES = re.compile(r"^([^\t\n#][^\t\n]*)\t([0-9]{1,16})\t([0-9a-fA-F]{32}(?:-[0-9]{1,5})?)\t"
                    r"(-|[A-Za-z0-9._+=/-]{1,1024})\t([0-9a-f]{64})$", re.MULTILINE)


class Entry(NamedTuple):
    """One file of the lock (a tuple: 100,000 of them are made in 0.02 s)."""

    size: int
    etag: str
    version_id: str  # "" when none is known
    sha256: str


@dataclass(frozen=True)
class Lock:
    """A lock file's header and entries ({path inside data/: Entry})."""

    bucket: str
    s3_path: str
    entries: dict


def sha256_of(path: str) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def render(bucket: str, s3_path: str, entries: Mapping[str, Entry]) -> str:
    """The lock file's text."""
    head = "\n".join([HEADER, f"# bucket: {bucket}", f"# s3_path: {s3_path}"])
    # A blank line between entries: git merges changes to neighbouring lines as one
    # conflict, and changes separated by an unchanged line on their own.
    body = "".join(f"\n{path}\t{e.size}\t{e.etag}\t{e.version_id or '-'}\t{e.sha256}\n"
                   for path, e in sorted(entries.items()))
    return head + "\n" + body


def parse(text: str, shown: str = LOCK) -> Lock:
    """A lock file's text as a Lock; a ConfigError naming the line for anything else.
    Windows line endings (git's core.autocrlf) are read as the lock's own."""
    text = text.replace("\r\n", "\n")
    quick = _parse_whole(text)
    return quick if quick is not None else _parse_lines(text, shown)


def _parse_whole(text: str) -> Lock | None:
    """A well-formed lock, read with one regular expression over the whole text (100,000
    files in a tenth of the time of reading it line by line); None when any line is not
    well-formed, to be read line by line for the message."""
    lines = text.split("\n")
    if len(lines) < 3 or not lines[0].startswith(HEADER[:HEADER.index(":")]):
        return None
    if not lines[1].startswith("# bucket: ") or not lines[2].startswith("# s3_path: "):
        return None
    found = _LINES.findall(text)
    expected = sum(1 for line in lines if line and line[0] != "#")
    if len(found) != expected or max(map(len, lines)) > MAX_LINE:
        return None
    entries = {path: Entry(int(size), etag.lower(), "" if version_id == "-" else version_id, sha)
               for path, size, etag, version_id, sha in found}
    if len(entries) != len(found) or any(map(key_problem, entries)):
        return None
    return Lock(lines[1][len("# bucket: "):], lines[2][len("# s3_path: "):], entries)


def _parse_lines(text: str, shown: str) -> Lock:
    """parse, a line at a time: what is wrong is named by its line."""
    bucket = s3_path = None
    entries: dict[str, Entry] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith(_MARKERS):
            raise ConfigError(
                f"{shown} has git's conflict markers (line {number}): a merge changed the same file on both "
                f"sides. Run `datakit data pull` and then `datakit data push` to write it anew, or take one side "
                f"with `git checkout --ours {LOCK}` (or --theirs), then commit it."
            )
        if len(line) > MAX_LINE:
            raise ConfigError(f"{shown}, line {number}: longer than {MAX_LINE} characters; this is no lock line. "
                              f"Take the file from git again (`git checkout -- {LOCK}`).")
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("# bucket: "):
                bucket = line[len("# bucket: "):]
            elif line.startswith("# s3_path: "):
                s3_path = line[len("# s3_path: "):]
            elif number == 1 and not line.startswith(HEADER.split(":")[0].rsplit(" ", 1)[0]):
                raise ConfigError(f"{shown} does not start as a datakit-data lock does. Take it from git again.")
            elif number == 1 and f"format {FORMAT}:" not in line:
                raise ConfigError(f"{shown} is in a format this datakit-data does not read ({printable(line[:80])}). "
                                  "Upgrade datakit-data.")
            continue
        entries_line(line, number, shown, entries)
    if bucket is None or s3_path is None:
        raise ConfigError(f"{shown} lacks its '# bucket:' or '# s3_path:' line. Take it from git again.")
    return Lock(bucket, s3_path, entries)


def entries_line(line: str, number: int, shown: str, entries: dict) -> None:
    """Add one lock line's entry, refusing what is not one."""
    fields = line.split("\t")
    where = f"{shown}, line {number}"
    if len(fields) != 5:
        raise ConfigError(f"{where}: {len(fields)} tab-separated fields, not 5 (path, size, ETag, version id, "
                          "SHA-256). Take the file from git again, or fix that line.")
    path, size, etag, version_id, sha = fields
    why = key_problem(path)
    if why:
        raise ConfigError(f'{where}: "{printable(path)[:200]}" cannot be a file in data/: {why}.')
    if not size.isdigit() or len(size) > 16:
        raise ConfigError(f'{where}: the size "{printable(size)[:40]}" is not a whole number of bytes.')
    if not _ETAG.fullmatch(etag):
        raise ConfigError(f'{where}: "{printable(etag)[:80]}" is not an S3 ETag.')
    if version_id != "-" and not _VERSION.fullmatch(version_id):
        raise ConfigError(f'{where}: "{printable(version_id)[:80]}" is not a version id S3 gives.')
    if not _SHA256.fullmatch(sha):
        raise ConfigError(f'{where}: "{printable(sha)[:80]}" is not a SHA-256.')
    if path in entries:
        raise ConfigError(f'{where}: data/{printable(path)} is named twice.')
    entries[path] = Entry(int(size), etag.lower(), "" if version_id == "-" else version_id, sha)


def read(path: str, shown: str = LOCK) -> Lock | None:
    """The lock file at path, or None when there is none."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"Cannot read {shown}: {err.strerror or err}.") from err
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{shown} is over {MAX_BYTES // 2**20} MiB: no lock of a project is. Take it from git again.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{shown} is not UTF-8 text (byte {err.start}). Take it from git again.") from err
    return parse(text, shown)


def lock_path(layout: Layout) -> str:
    return os.path.join(layout.root, LOCK)


def write(layout: Layout, lock: Lock) -> None:
    """Write the lock (beside, then renamed), unless it already says exactly this."""
    path = lock_path(layout)
    text = render(lock.bucket, lock.s3_path, lock.entries)
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read(MAX_BYTES + 1) == text:
                return
    except (OSError, UnicodeDecodeError):
        pass
    write_text(layout, text)


def updated(old: Lock | None, bucket: str, s3_path: str, record: Mapping, *, answered: Mapping[str, str],
            hashed: Mapping[str, str], touched: Iterable[str] = ()) -> Lock:
    """The lock after a run: one entry per file of the sync record (``record``: {path:
    Recorded}), and the old entries of paths neither in the record nor ``touched``. An
    entry whose ETag and size still match the record is kept (with the version id S3
    answered this run, if any); another takes the record's ETag,
    the version id S3 answered (``answered``) and its SHA-256 (``hashed``); a file with
    no SHA-256 known is left out. A lock of another bucket or s3_path starts afresh."""
    before = old.entries if old is not None and (old.bucket, old.s3_path) == (bucket, s3_path) else {}
    # A file this checkout has not synced (a partial pull of a fresh clone, a version
    # pull --commit could not bring back) keeps the lock's line: the lock is the commit's.
    gone = set(touched)
    entries = {path: entry for path, entry in before.items() if path not in record and path not in gone}
    for path, rec in record.items():
        entry = before.get(path)
        if entry is not None and entry.etag == rec.etag.lower() and entry.size == rec.size:
            if answered.get(path) and answered[path] != entry.version_id:  # the version S3 made now
                entry = Entry(entry.size, entry.etag, answered[path], entry.sha256)
            entries[path] = entry
        elif path in hashed:
            entries[path] = Entry(rec.size, rec.etag.lower(), answered.get(path, ""), hashed[path])
    return Lock(bucket, s3_path, entries)


def needing_hash(old: Lock | None, bucket: str, s3_path: str, record: Mapping) -> Iterable[str]:
    """Paths of the record whose lock entry is missing or out of date (their bytes must be hashed)."""
    before = old.entries if old is not None and (old.bucket, old.s3_path) == (bucket, s3_path) else {}
    for path, rec in record.items():
        entry = before.get(path)
        if entry is None or entry.etag != rec.etag.lower() or entry.size != rec.size:
            yield path


def differences(lock: Lock, local: Mapping, record: Mapping, data: str, covers=lambda path: True) -> dict[str, str]:
    """{path: how data/ differs from the lock} for the paths ``covers`` keeps. A file as
    recorded with the lock's ETag matches unread; another of the lock's size is hashed."""
    found = {}
    for path, entry in lock.entries.items():
        if not covers(path):
            continue
        here = local.get(path)
        if here is None:
            found[path] = "not in data/"
            continue
        recorded = record.get(path)
        if recorded is not None and recorded.etag.lower() == entry.etag and not local_moved(here, recorded):
            continue
        if here.size != entry.size:
            found[path] = "other bytes here"
            continue
        try:
            if sha256_of(os.path.join(data, path)) != entry.sha256:
                found[path] = "other bytes here"
        except OSError:
            found[path] = "cannot be read here"
    for path in local:
        if path not in lock.entries and covers(path):
            found[path] = "not in the lock"
    return found


# Keeping it up to date cheaply ----------------------------------------------------
#
# Reading a lock of 100,000 files costs 0.35 s, writing one 0.18 s: more than a no-op
# or a 5-edit push may spend on it. When neither the lock nor the sync record changed
# since the last run wrote both (their size, time and inode are remembered in
# .datakit-data/lock-seen.json), the lock is the record's image: a run only changes the
# lines of the paths its record changed, found by bisection, and a run that changed
# none does not touch the file.


def _seen_path(layout: Layout) -> str:
    return os.path.join(layout.state, "lock-seen.json")


def _stats(layout: Layout) -> list | None:
    try:
        found = [os.stat(lock_path(layout)), os.stat(layout.record)]
    except OSError:
        return None
    return [[st.st_size, st.st_mtime_ns, st.st_ino] for st in found]


def unchanged(layout: Layout) -> bool:
    """Are the lock and the sync record as the last run that wrote them left them?"""
    try:
        seen = json.loads(read_state_file(_seen_path(layout), 4096) or b"null")
    except ValueError:
        return False
    now = _stats(layout)
    return now is not None and seen == now


def remember(layout: Layout) -> None:
    """Note the lock and the record as this run leaves them (after both are written)."""
    now = _stats(layout)
    try:
        if now is None:
            os.remove(_seen_path(layout))
        else:
            with written_beside(_seen_path(layout)) as tmp:
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(now, fh)
    except OSError:
        pass  # read whole next time


def _line(path: str, e: Entry) -> str:
    return f"{path}\t{e.size}\t{e.etag}\t{e.version_id or '-'}\t{e.sha256}"


def spliced(text: str, record: Mapping, touched: Iterable[str], answered: Mapping[str, str],
            hash_of) -> str | None:
    """The lock text (one this datakit wrote, in step with the record before the run)
    with the lines of the ``touched`` paths brought in line with the record; None when
    nothing changes. ``hash_of(path)``: the SHA-256 of a file as recorded, or None."""
    head, _, body = text.partition("\n\n")
    head = head.rstrip("\n")
    lines = [line for line in body.split("\n") if line]
    keys = [line[:line.index("\t")] for line in lines]
    changed = False
    for path in sorted(touched):
        at = bisect.bisect_left(keys, path)
        present = at < len(keys) and keys[at] == path
        recorded = record.get(path)
        if recorded is None:
            if present:
                del lines[at], keys[at]
                changed = True
            continue
        if present:
            _, size, etag, version_id, sha = lines[at].split("\t")
            if etag == recorded.etag.lower() and int(size) == recorded.size:
                if answered.get(path) and answered[path] != (version_id if version_id != "-" else ""):
                    lines[at] = _line(path, Entry(recorded.size, etag, answered[path], sha))
                    changed = True
                continue
        digest = hash_of(path)
        if digest is None:
            if present:
                del lines[at], keys[at]  # its bytes are not known: left out, not claimed
                changed = True
            continue
        new = _line(path, Entry(recorded.size, recorded.etag.lower(), answered.get(path, ""), digest))
        if present:
            lines[at] = new
        else:
            lines.insert(at, new)
            keys.insert(at, path)
        changed = True
    if not changed:
        return None
    return head + "\n" + "".join(f"\n{line}\n" for line in lines)


def write_text(layout: Layout, text: str) -> None:
    """Write the lock's text (beside, then renamed)."""
    path = lock_path(layout)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with written_beside(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # a file for git, as the user's other files


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
