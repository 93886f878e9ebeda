"""What a run finds: the files of data/ and the objects of the S3 folder.

The local walk (links, loops, limits, names that cannot be keys), each file's
ETag as S3 would give it, and the listing, narrowed to the run's selection, make
one ``Scan``: what the plan (plan.py) decides on, and what neither side may use.
"""
import functools
import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from sys import intern
from typing import Callable, Iterable, Mapping

from . import awsconfig, names, s3
from .exceptions import FlagError
from .files import is_our_temporary, remove_temporary
from .layout import Layout
from .masking import mask_secrets
from .names import key_problem, printable
from .plan import Local, Remote
from .record import SyncRecord
from .report import human_bytes
from .selection import PROJECT_FOLDER, Selection
from .settings import Settings
from .threads import Beside

log = logging.getLogger(__name__)

#: Files this big say so before they are read to compare their content.
BIG_FILE = 256 * 1024 * 1024
#: Folders deeper than this are not entered (the walk would exhaust Python's stack
#: long before a file system's path limit).
MAX_DEPTH = 200


@dataclass
class Scan:
    """data/ and the S3 folder as found: files, objects, and what neither side may use."""

    local: dict[str, Local]  # the files of the run
    remote: dict[str, Remote]  # the objects of the run (an --as-of pull puts the state then)
    skipped: dict[str, str]  # local files that cannot be pushed: {path: why}
    refused: dict[str, str]  # objects of the run whose keys cannot be local paths: {path: why}
    content: Callable[[str], str | None]  # the local file's ETag, read once
    matches: Callable[[str, str], bool] = lambda path, etag: False  # does the file hold the bytes of this ETag?
    listed: dict[str, Remote] = field(default_factory=dict)  # the whole listing under the selection's root
    unsafe: dict[str, str] = field(default_factory=dict)  # every listed key that cannot be a local path
    left_out: int = 0  # junk and excluded files (local ones and objects) left out
    unfollowed: list[str] = field(default_factory=list)  # links left out by no-follow-symlinks

    def same(self, path: str) -> bool:
        """Identical content on both sides?"""
        return self.matches(path, self.remote[path].etag)

    @property
    def left_alone(self) -> dict[str, str]:
        """{path: why} of what the scan could not look at, which nothing may change."""
        return left_alone(self.skipped, self.unfollowed)

    def recorded(self, record: SyncRecord, selection: Selection) -> dict:
        """The record's entries for the paths this run looks at."""
        return {path: entry for path, entry in record.files.items()
                if selection.covers(path) and not selection.left_out(path)}

    def as_recorded(self, record: SyncRecord) -> Callable[[str], bool]:
        """as_recorded(path): does the local file still hold the content recorded for it?"""
        return lambda path: self.matches(path, record.files[path].etag)


def gather(layout: Layout, settings: Settings, selection: Selection = Selection(), *,
           follow_symlinks: bool = True, tidy: bool = False) -> Scan:
    """Scan data/ and list S3 (the selection's part of each), leaving out junk and
    excluded paths, and setting aside keys that must never become local paths.
    ``tidy`` (a run holding the lock) removes our temporary files a killed run left."""
    data_dir = layout.data
    present = os.path.isdir(data_dir)
    # Listed while the walk reads the disk: most of a listing is waiting on S3.
    listing = Beside(s3.list_remote, settings, under=selection.root)
    left: list[str] = []
    unfollowed: list[str] = []
    local, skipped = (scan_local(data_dir, selection, follow_symlinks=follow_symlinks, left=left,
                                 unfollowed=unfollowed, tidy=tidy)
                      if present else ({}, {}))
    prefix = len(settings.key_prefix.encode("utf-8"))
    # (A path of fewer than a quarter as many characters fits whatever they are.)
    for path in [p for p in local if prefix + 4 * len(p) > names.KEY_MAX
                 and prefix + len(p.encode("utf-8")) > names.KEY_MAX]:
        del local[path]
        skipped[path] = f"its S3 key would be longer than S3's {names.KEY_MAX} bytes; shorten its path"
    listed = listing.result()
    folded = names.is_case_insensitive(data_dir) if present else False
    unsafe = names.refused_keys(listed, folded, path_max=path_max(layout))
    # The project's own marker (.datakit/ at the top of s3_path, see claim.py) is no data.
    ours = {path for path in listed if selection.covers(path) and not path.startswith(PROJECT_FOLDER)}
    left_remote = {path for path in ours if selection.left_out(path)}
    ours -= left_remote
    refused = {path: why for path, why in unsafe.items() if path in ours}
    remote = {path: listed[path] for path in ours if path not in refused}

    @functools.cache
    def sizes() -> tuple[int, int]:
        return awsconfig.multipart_sizes(settings)

    @functools.cache
    def content(path: str) -> str | None:
        size = local[path].size
        if size >= BIG_FILE:
            log.info("Reading data/%s (%s) to compare its content...", printable(path), human_bytes(size))
        try:
            return local_etag(os.path.join(data_dir, path), *sizes())
        except OSError:
            return None

    @functools.cache
    def matches(path: str, etag: str) -> bool:
        ours = content(path)
        if ours is None or ours == etag:
            return ours is not None
        shapes = other_shapes(local[path].size, etag, sizes())
        if not shapes:
            return False
        try:
            return etag in etags_of(os.path.join(data_dir, path), shapes)
        except OSError:
            return False

    return Scan(local, remote, skipped, refused, content, matches, listed=listed, unsafe=unsafe,
                left_out=len(left) + len(left_remote), unfollowed=unfollowed)


def resolve(layout: Layout, settings: Settings, selection: Selection) -> Selection:
    """A path word without a trailing / names a folder when data/ or S3 has one there."""
    return selection.with_paths(_resolved(layout, settings, path) for path in selection.paths)


def _resolved(layout: Layout, settings: Settings, path: str) -> str:
    local = os.path.join(layout.data, path.rstrip("/"))
    if path.endswith("/"):
        if os.path.isfile(local):
            raise FlagError(f"data/{printable(path)} is a file, not a folder: write it without the trailing /.")
        return path
    if os.path.isdir(local) or (not os.path.lexists(local) and s3.has_objects(settings, path + "/")):
        return path + "/"
    return path


def check_path_found(scan: Scan, selection: Selection, settings: Settings) -> None:
    """A path word that names nothing, in data/ or on S3, is an error naming it."""
    if not selection.paths:
        return
    found = [scan.local, scan.remote, scan.skipped, scan.refused]
    if len(selection.paths) == 1 and any(found):
        return
    named = {path for paths in found for path in paths}
    for chosen in selection.paths:
        one = Selection((chosen,))
        if any(one.covers(path) for path in named):
            continue
        shown = f"data/{printable(chosen)}"
        if scan.left_out and (len(selection.paths) == 1 or selection.left_out(chosen)):
            raise FlagError(
                f"{shown} is junk or excluded by the \"exclude\" patterns of the project or global config: "
                "it never syncs. Change the patterns to sync it."
            )
        glob = " A shell pattern (*, ?) matches only files in data/ here: name the folder to pull it." \
            if any(c in chosen for c in "*?[") else ""
        raise FlagError(
            f"Nothing to sync at {shown}: no file there in data/ nor in {mask_secrets(settings.s3_url)}. "
            f"Check the path (`datakit data status` shows what there is).{glob}"
        )


def path_max(layout: Layout) -> int:
    """The longest path below data/ that fits under the staging folder, with room for
    the AWS CLI's temporary suffix."""
    try:
        limit = os.pathconf(layout.root, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # AttributeError: Windows has no pathconf
        limit = 4096 if os.name == "posix" else 260
    deepest = os.path.join(os.path.abspath(layout.staging("pull", 4294967296)), "data", "")
    return limit - len(deepest.encode("utf-8")) - 16


def scan_local(data_dir: str, selection: Selection = Selection(), *, follow_symlinks: bool = True,
               left: list[str] | None = None, unfollowed: list[str] | None = None, tidy: bool = False
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
    for folder, dirs, entries in os.walk(data_dir, followlinks=follow_symlinks, onerror=unreadable):
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
        folder_slash = os.path.join(folder, "")
        above = relative(folder_slash)  # "" or "a/b/"
        for name in sorted(entries):
            full = folder_slash + name
            rel = above + name
            if not selection.covers(rel):
                continue
            if is_our_temporary(name):
                if tidy:
                    remove_temporary(full)
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
            if not follow_symlinks and stat.S_ISLNK(st.st_mode):  # (lstat's answer: no second call)
                unfollowed.append(rel)
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped[rel] = "not a regular file: a FIFO, socket or device"
                continue
            # Asked of the system, not read from the mode bits: ACLs, NFS and security
            # modules can refuse what the owner's read bit allows.
            if not os.access(full, os.R_OK):
                skipped[rel] = "permission denied"
                continue
            # Interned: the listing and the record hold the same path as one string.
            files[intern(rel)] = Local(st.st_size, st.st_mtime_ns, st.st_ino)
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


def local_etag(path: str, threshold: int = awsconfig.MULTIPART_THRESHOLD, chunk: int = awsconfig.MULTIPART_CHUNK) -> str:
    """The ETag S3 gives this file when the AWS CLI uploads it: the MD5 of the bytes
    below the multipart threshold, else the MD5 of the parts' MD5s and the part count."""
    with open(path, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        if file_size < threshold:
            digest = hashlib.md5(usedforsecurity=False)
            while block := fh.read(1024 * 1024):
                digest.update(block)
            return digest.hexdigest()
        size = awsconfig.part_size(file_size, chunk)
        digests = []
        while block := fh.read(size):
            digests.append(hashlib.md5(block, usedforsecurity=False).digest())
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


#: Part sizes other tools upload in, in MiB (rclone 5, s5cmd 50, and the like), beside
#: the AWS CLI's own: the same bytes uploaded by them have another ETag.
OTHER_PART_MIB = (5, 8, 10, 15, 16, 25, 32, 50, 64, 100, 128, 256, 512, 1024, 5120)
_ETAG = re.compile(r"([0-9a-f]{32})(?:-([0-9]{1,5}))?")
MiB = 1024 * 1024


def other_shapes(size: int, etag: str, sizes: tuple[int, int]) -> list[int]:
    """The ways to hash a file of ``size`` bytes that could give this ETag, other than
    the AWS CLI's with these (threshold, chunk) sizes: 0 for the MD5 of the whole (a
    store or tool that gives no multipart ETag), else part sizes that cut the file into
    as many parts as the ETag names (``-N``). Few, or none: each is a read of the file."""
    match = _ETAG.fullmatch(etag)
    if match is None:
        return []
    threshold, chunk = sizes
    if match.group(2) is None:
        return [0] if size >= threshold else []  # (below it, the AWS CLI's own ETag is that MD5)
    parts = int(match.group(2))
    if not 1 <= parts <= awsconfig.MAX_PARTS or size == 0:
        return []
    if parts == 1:
        return [size]  # one part: its size does not change the ETag
    ours = awsconfig.part_size(size, chunk) if size >= threshold else None
    # A tool that grows its part size to stay within S3's parts takes about size / parts.
    fitted = -(-size // parts)
    candidates = [m * MiB for m in OTHER_PART_MIB] + [-(-fitted // MiB) * MiB, fitted]
    shapes = []
    for part in candidates:
        if part != ours and part not in shapes and -(-size // part) == parts:
            shapes.append(part)
    return shapes


def etags_of(path: str, shapes: Iterable[int]) -> set[str]:
    """The ETags of the file at path hashed in each of these shapes (see other_shapes),
    in one read of it."""
    shapes = list(shapes)
    whole = hashlib.md5(usedforsecurity=False) if 0 in shapes else None
    cut = {part: ([], hashlib.md5(usedforsecurity=False), [0]) for part in shapes if part}
    with open(path, "rb") as fh:
        while block := fh.read(MiB):
            if whole is not None:
                whole.update(block)
            for part, (digests, current, filled) in cut.items():
                at = 0
                while at < len(block):
                    take = min(part - filled[0], len(block) - at)
                    current.update(block[at:at + take])
                    filled[0] += take
                    at += take
                    if filled[0] == part:
                        digests.append(current.digest())
                        current = hashlib.md5(usedforsecurity=False)
                        filled[0] = 0
                cut[part] = (digests, current, filled)
    found = {whole.hexdigest()} if whole is not None else set()
    for digests, current, filled in cut.values():
        if filled[0]:
            digests.append(current.digest())
        found.add(f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}")
    return found


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


