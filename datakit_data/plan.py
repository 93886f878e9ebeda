"""Safe-sync planning: what a push or pull may change without losing anyone's work.

Plain `aws s3 sync` compares sizes and times, so it overwrites local edits on pull,
lets a stale copy overwrite a newer object on push, misses same-size edits, and
deletes what a collaborator added. Here each path is judged against the sync
record (what the file was at the last successful push or pull): a side "changed"
when it differs from the record. Only the side that changed since the record may
overwrite the other; a path changed on both sides is a conflict unless the two
are identical, or the user says `force`.
"""
import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .names import key_problem, printable
from .selection import Selection

#: The AWS CLI's defaults for when an upload goes in parts, and how big each part is
#: (``multipart_threshold`` / ``multipart_chunksize`` under ``s3 =`` in ~/.aws/config).
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
#: Folders deeper than this are not entered (the walk would exhaust Python's stack
#: long before a file system's path limit).
MAX_DEPTH = 200
#: S3's limits on parts: at most 10,000 of them, each 5 MiB to 5 GiB.
MAX_PARTS = 10_000
MIN_PART, MAX_PART = 5 * 1024 * 1024, 5 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Local:
    """A file in data/ as scanned."""

    size: int
    mtime_ns: int
    ino: int = 0


@dataclass(frozen=True)
class Remote:
    """An object as listed; its time is kept as the text S3 sent."""

    size: int
    etag: str
    last_modified: str = ""


@dataclass
class Plan:
    """What one push or pull will do; paths are relative to data/."""

    direction: str
    transfer: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    baseline: list[str] = field(default_factory=list)
    unchanged: int = 0
    forget: list[str] = field(default_factory=list)
    refresh: list[str] = field(default_factory=list)  # same content, new time: update the record
    restored: list[str] = field(default_factory=list)  # pull: deleted locally, brought back

    def transfer_bytes(self, local: Mapping[str, Local], remote: Mapping[str, Remote]) -> int:
        """Bytes the transfers will move."""
        side = local if self.direction == "push" else remote
        return sum(side[path].size for path in self.transfer)


def scan_local(data_dir: str, follow_symlinks: bool = True, selection: Selection = Selection(),
               left: list[str] | None = None,
               unfollowed: list[str] | None = None, *, tidy: bool = False
               ) -> tuple[dict[str, Local], dict[str, str]]:
    """Regular files under data/ that the selection covers: ({path: Local}, {path: why skipped}).

    Names that cannot be object keys (see names.key_problem) are skipped. With
    links followed (the AWS CLI's default), a folder link is not followed when it
    leads back to a folder it sits in (a loop, e.g. ``data/self -> .`` or
    ``data/root -> /``), to a folder another link already included, or to a folder
    inside data/ (an alias: the same files under two names). Junk and excluded
    paths are appended to ``left`` (a folder once, ending with /); with links not
    followed, the links left out are appended to ``unfollowed``. Our own temporary
    files are never listed; with ``tidy`` (under the lock), those a killed run left
    are removed.
    """
    files, skipped = {}, {}
    unfollowed = [] if unfollowed is None else unfollowed
    root = os.path.realpath(data_dir)
    linked = set()  # folders reached through links
    left = [] if left is None else left

    inner = len(os.path.join(data_dir, ""))

    def relative(full: str) -> str:
        # os.walk joins onto data_dir as given: cutting it off is os.path.relpath, 20 times sooner.
        return full[inner:].replace(os.sep, "/")

    def unreadable(err: OSError) -> None:
        skipped[relative(err.filename) + "/"] = "a folder that cannot be read"

    # From data/ even for one path: the folders above it get the same checks (links,
    # loops, exclusions) as in a whole scan; the others are not entered.
    for folder, dirs, names in os.walk(data_dir, followlinks=follow_symlinks, onerror=unreadable):
        kept = []
        for name in sorted(dirs):
            full = os.path.join(folder, name)
            rel = relative(full)
            if not selection.reaches(rel + "/"):
                continue
            if selection.left_out(rel + "/"):
                left.append(rel + "/")
                continue
            if not follow_symlinks and os.path.islink(full):
                unfollowed.append(rel + "/")
                continue
            if rel.count("/") >= MAX_DEPTH:
                skipped[rel + "/"] = f"a folder more than {MAX_DEPTH} levels deep"
                continue
            why = key_problem(rel) or (
                _link_problem(full, data_dir, root, linked) if follow_symlinks else None)
            if why:
                skipped[rel + "/"] = why
            else:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(names):
            full = os.path.join(folder, name)
            rel = relative(full)
            if not selection.covers(rel):
                continue
            if is_our_temporary(name):
                if tidy:
                    _remove_temporary(full)
                continue
            if selection.left_out(rel):
                left.append(rel)
                continue
            why = key_problem(rel)
            if why:
                skipped[rel] = why
                continue
            try:
                st = os.stat(full) if follow_symlinks else os.lstat(full)
            except FileNotFoundError:
                # Maybe a folder on a drive that is not there: what lies under it is unknown too.
                skipped[rel] = "a link whose target does not exist"
                continue
            except OSError as err:
                skipped[rel] = err.strerror.lower() if err.strerror else "cannot be read"
                continue
            if os.path.islink(full) and not follow_symlinks:
                unfollowed.append(rel)
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped[rel] = "not a regular file: a FIFO, socket or device"
                continue
            if not os.access(full, os.R_OK):
                skipped[rel] = "permission denied"
                continue
            files[rel] = Local(st.st_size, st.st_mtime_ns, st.st_ino)
    return files, skipped


def _link_problem(full: str, data_dir: str, root: str, linked: set) -> str | None:
    """Why a folder link must not be followed, or None (not a link, or fine to follow)."""
    if not os.path.islink(full):
        return None
    try:
        target = os.path.realpath(full)
        st = os.stat(full)
    except OSError:
        return "a link to a folder that cannot be read"
    # A link back to a folder it sits in (data/ itself, or anything above) is a loop.
    above = os.path.dirname(full)
    while True:
        if os.path.realpath(above) == target:
            return "a link to a folder that holds it (a loop)"
        if os.path.normpath(above) == os.path.normpath(data_dir):
            break
        above = os.path.dirname(above)
    if root == target or root.startswith(target.rstrip(os.sep) + os.sep):
        return "a link to a folder that holds data/ itself (a loop)"
    if target.startswith(root.rstrip(os.sep) + os.sep):
        # Its files sync under their own names: through the link a pull would write or
        # delete them under a second name, and a push send them twice.
        alias = target[len(root.rstrip(os.sep)) + 1:].replace(os.sep, "/")
        return (f"a link to data/{printable(alias)}/, which syncs under its own name; "
                "add the link to \"exclude\" or remove it")
    # Each folder is reached through links once at most: two links to one folder
    # (or layers of them, which grow exponentially) are walked once.
    if (st.st_dev, st.st_ino) in linked:
        return "a link to a folder that another link already includes"
    linked.add((st.st_dev, st.st_ino))
    return None


def part_size(file_size: int, chunk: int = MULTIPART_CHUNK) -> int:
    """The part size the AWS CLI really uses for a file: the chunk size, doubled until
    the file fits in S3's 10,000 parts, kept between 5 MiB and 5 GiB."""
    size = chunk
    while -(-file_size // size) > MAX_PARTS:
        size *= 2
    return min(max(size, MIN_PART), MAX_PART)


def local_etag(path: str, threshold: int = MULTIPART_THRESHOLD, chunk: int = MULTIPART_CHUNK) -> str:
    """The ETag S3 gives this file when the AWS CLI uploads it: the MD5 of the bytes
    below the multipart threshold, else the MD5 of the parts' MD5s and the part count."""
    with open(path, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        if file_size < threshold:
            digest = hashlib.md5(usedforsecurity=False)
            while block := fh.read(1024 * 1024):
                digest.update(block)
            return digest.hexdigest()
        size = part_size(file_size, chunk)
        digests = []
        while block := fh.read(size):
            digests.append(hashlib.md5(block, usedforsecurity=False).digest())
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def _changed(path, side, record, differs) -> bool:
    """Has this side's copy of path changed since the record (appeared, gone, or differs)?"""
    base = record.get(path)
    now = side.get(path)
    if base is None:
        return now is not None
    return now is None or differs(path, now, base)


def _local_moved(now, base) -> bool:
    """Did size, time or inode move since the record? (Content may still be the same.)"""
    return now.size != base["size"] or now.mtime_ns != base["mtime_ns"] or now.ino != base.get("ino", now.ino)


def _remote_differs(path, now, base) -> bool:
    return now.etag != base["etag"]


def make_plan(direction: str, local: Mapping[str, Local], remote: Mapping[str, Remote],
              record: Mapping[str, dict], delete: bool = False, force: bool = False,
              same: Callable[[str], bool] | None = None, as_recorded: Callable[[str], bool] | None = None,
              unreadable: Mapping[str, str] | None = None) -> Plan:
    """Decide, path by path, what a push or pull does.

    ``record`` maps paths to {"size", "mtime_ns", "ino", "etag"} from the last sync
    (empty when there is none). ``same(path)`` says whether the local file and the
    object have identical content; it is only asked when both sides changed.
    ``as_recorded(path)`` says whether a local file whose time or inode moved (size
    unchanged) still has the recorded content; such a file is unchanged, and its
    path is listed in ``plan.refresh``. ``unreadable`` maps the local paths the scan
    could not look at (``x`` for a file, ``x/`` for a folder; see left_alone) to why:
    what lies there is unknown, so nothing at or below them is restored, overwritten
    or deleted on either side.
    """
    plan = Plan(direction)

    def _local_differs(path, now, base) -> bool:
        if not _local_moved(now, base):
            return False
        if now.size == base["size"] and as_recorded is not None and as_recorded(path):
            plan.refresh.append(path)
            return False
        return True

    source, target = (local, remote) if direction == "push" else (remote, local)
    source_differs, target_differs = (
        (_local_differs, _remote_differs) if direction == "push" else (_remote_differs, _local_differs)
    )
    here, there = ("locally", "on S3") if direction == "push" else ("on S3", "locally")
    hidden = _alone(unreadable or {})
    for path in sorted(set(local) | set(remote) | set(record)):
        kept_why = hidden(path)
        if kept_why:
            if path in remote or path in record:
                plan.kept[path] = kept_why
            continue
        src_changed = _changed(path, source, record, source_differs)
        dst_changed = _changed(path, target, record, target_differs)
        in_source, in_target = path in source, path in target
        if not in_source and not in_target:
            plan.forget.append(path)  # deleted on both sides
            continue
        if not src_changed and not dst_changed:
            plan.unchanged += 1
            continue
        if direction == "pull" and in_source and not in_target:
            # Deleted locally: bringing S3's copy back loses nothing.
            plan.transfer.append(path)
            if path in record:
                plan.restored.append(path)
            continue
        if src_changed and not dst_changed:
            _source_wins(plan, path, in_source, delete, here, there)
            continue
        if dst_changed and not src_changed:
            # `force` resolves conflicts. A push may send an unchanged copy over S3's
            # (the second step of an undo), but a pull never replaces a local edit of a
            # file S3 did not change: that edit is in no version anywhere.
            if force and in_source and direction == "push":
                plan.transfer.append(path)
            elif not in_target:
                plan.kept[path] = f"deleted {there} since the last sync; not restored"
            elif not in_source:
                plan.kept[path] = f"only {there}, never synced; kept"
            else:
                plan.kept[path] = f"changed {there} since the last sync; not overwritten"
            continue
        # Changed on both sides (or new on both): identical content is no conflict.
        if in_source and in_target and same is not None and same(path):
            plan.baseline.append(path)
            plan.unchanged += 1
        elif force:
            _source_wins(plan, path, in_source, delete, here, there)
        elif not in_source:
            plan.conflicts[path] = f"deleted {here} but changed {there}"
        elif not in_target:
            plan.conflicts[path] = f"changed {here} but deleted {there}"
        else:
            plan.conflicts[path] = "changed on both sides" if record else "differs, and there is no sync record yet"
    return plan


#: Why a path is kept, on both sides, when the scan could not look at it.
UNREADABLE = "cannot be read here (see the skipped files); left as it is"
UNFOLLOWED = "under a link that is not followed (no-follow-symlinks); left as it is"


def left_alone(skipped: Mapping[str, str], unfollowed: Iterable[str] = ()) -> dict[str, str]:
    """{path the scan could not look at: why it is kept} for make_plan. A link the scan
    did not follow says which link and why, for what lies under it."""
    alone = {p: UNFOLLOWED for p in unfollowed}
    for path, why in skipped.items():
        if not why.startswith("a link"):
            alone[path] = UNREADABLE
            continue
        folder = path if path.endswith("/") else path + "/"
        alone[folder] = f"under data/{printable(folder)}, {why}; left as it is"
        if folder != path:
            alone[path] = f"{why}; left as it is"
    return alone


def _alone(kept: Mapping[str, str]) -> Callable[[str], str | None]:
    """why(path): the reason a path is left alone, when it is one of these paths or below
    one. A skipped file may be a link to a folder that is not there (an unplugged
    drive): what was synced under its name is left alone too."""
    folders = {p + "/": why for p, why in kept.items() if not p.endswith("/")}
    folders.update((p, why) for p, why in kept.items() if p.endswith("/"))  # said for the folder itself

    def why(path: str) -> str | None:
        if path in kept:
            return kept[path]
        if not folders:
            return None
        at = path.find("/")
        while at >= 0:
            found = folders.get(path[:at + 1])
            if found:
                return found
            at = path.find("/", at + 1)
        return None
    return why


#: Our temporary files in data/: a copy being written (see safesync._copy_into).
TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".datakit-data-", ".part"


def is_our_temporary(name: str) -> bool:
    """Is this file name one of our temporary copies (never synced, removed when found)?"""
    return name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX)


def _remove_temporary(path: str) -> None:
    """Remove a temporary copy a killed run left (a regular file only, never a link)."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _source_wins(plan, path, in_source, delete, here, there) -> None:
    """The source's state goes across: its copy, or (only with `delete`) its deletion."""
    if in_source:
        plan.transfer.append(path)
    elif delete:
        plan.delete.append(path)
    else:
        plan.kept[path] = f"deleted {here}; use `delete` to remove it {there} too"
