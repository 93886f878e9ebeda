"""`datakit data compare`: S3's version of a file beside yours, to settle a conflict.

For each file named (by default every conflict), the version S3 holds now is saved
under ``.datakit-data/theirs/data/<path>`` (the state folder: it never syncs), its
ETag is remembered in ``.datakit-data/theirs.json``, and what differs is shown for a
text file. A `push force` of such a file then goes through only while S3 still holds
the version that was looked at (see ``held_since_compare``): nobody's later push is
overwritten unseen.
"""
import difflib
import logging
import os
import threading
from typing import Callable, Iterable, Mapping

from . import s3, versions
from .exceptions import DatakitDataError, FlagError
from .files import write_json
from .layout import Layout, read_text_map, state_folder
from .names import Inside, UnsafePath, printable
from .plan import make_plan
from .record import SyncRecord
from .report import human_bytes
from .scan import check_path_found, gather
from .selection import Selection
from .settings import Settings

log = logging.getLogger(__name__)

#: Files one compare saves at most (each is downloaded whole).
MOST_FILES = 200
#: Text files up to this size get a diff; bigger ones are only saved.
DIFF_BYTES = 4 * 1024 * 1024
#: Diff lines shown per file before "... N more lines".
DIFF_LINES = 60
#: The largest theirs.json read.
THEIRS_LIMIT = 16 * 1024 * 1024
#: What push says of a file S3 changed again after `compare` saved its version.
CHANGED_SINCE = "S3 changed it again after `datakit data compare` saved its version; compare again"
DELETED_SINCE = "someone deleted it on S3 after `datakit data compare` saved its version; compare again"
#: Characters of a diff line shown (a one-line CSV of megabytes is one line).
LINE_CHARS = 300


def compare(layout: Layout, settings: Settings, selection: Selection, say: Callable[[str], None]) -> int:
    """Save S3's version of each chosen file (or of each conflict) beside yours, and say
    what differs. Returns the exit code: 0."""
    scan = gather(layout, settings, selection)
    check_path_found(scan, selection, settings)
    record = SyncRecord.load(layout, settings)
    if selection.paths:
        chosen = sorted(path for path in scan.remote if selection.covers(path))
        if not chosen:
            raise FlagError(f"S3 holds none of {selection.shown}: there is nothing of theirs to compare with.")
    else:
        plan = make_plan("push", scan.local, scan.remote, scan.recorded(record, selection), same=scan.same,
                         as_recorded=scan.as_recorded(record), unreadable=scan.left_alone)
        chosen = sorted(path for path in plan.conflicts if path in scan.remote)
        for path in sorted(path for path in plan.conflicts if path not in scan.remote):
            say(f"data/{printable(path)}: deleted on S3 and changed here; there is no version of theirs to save. "
                f"`datakit data push force data/{printable(path)}` puts yours back, "
                f"`datakit data pull force delete data/{printable(path)}` deletes it here (yours is kept aside).")
        if not chosen and plan.conflicts:
            return 0
        if not chosen:
            say("No conflicts: nothing to compare. Name a file to see S3's version of it anyway "
                "(e.g. `datakit data compare data/x.csv`).")
            return 0
    if len(chosen) > MOST_FILES:
        raise FlagError(f"{len(chosen)} files to compare; at most {MOST_FILES} at once. Name a folder or files.")
    names = versions.pushers(settings, [(path, None) for path in chosen])
    saved = theirs(layout)
    folder = os.path.join(state_folder(layout, layout.theirs), "data")
    into = Inside(folder)
    for path in chosen:
        remote = scan.remote[path]
        target = into.prepared(path)
        _fetch(settings, path, remote.etag, target)
        saved[path] = remote.etag
        who = names.get((path, None)) or "someone without datakit"
        shown = printable(path)
        say(f"S3's version of data/{shown} (pushed by {printable(who)}, {versions.when(remote.last_modified)}, "
            f"{human_bytes(remote.size)}) is in {os.path.relpath(target, layout.root)}")
        for line in _differences(os.path.join(layout.data, path), target, path):
            say(line)
    write_json(layout.theirs_json, saved, indent=None)
    say("Settle each: `datakit data push force PATH` (yours wins, or your merge of both), or "
        "`datakit data pull force PATH` (theirs wins; yours is kept aside).")
    return 0


def _fetch(settings: Settings, path: str, etag: str, target: str) -> None:
    """Download the current version of path (the one listed) to target, replacing an
    older saved copy."""
    partial = target + ".part"
    try:
        os.remove(partial)
    except FileNotFoundError:
        pass
    try:
        s3.download_version(settings, path, None, partial, stop=threading.Event(), etag=etag)
        os.replace(partial, target)
    except (DatakitDataError, OSError):
        try:
            os.remove(partial)
        except OSError:
            pass
        raise


def _differences(mine: str, saved: str, path: str) -> Iterable[str]:
    """Lines saying how your file and S3's saved version differ: a unified diff for
    text, sizes otherwise."""
    try:
        ours_size = os.path.getsize(mine)
    except OSError:
        yield f"  data/{printable(path)} is not in data/ here: S3's version is the only one."
        return
    theirs_size = os.path.getsize(saved)
    if ours_size <= DIFF_BYTES and theirs_size <= DIFF_BYTES:
        ours_text, theirs_text = _text(mine), _text(saved)
        if ours_text is not None and theirs_text is not None:
            if ours_text == theirs_text:
                yield "  identical to yours: `datakit data push` records them as in sync."
                return
            if ours_text.splitlines() == theirs_text.splitlines():
                yield "  the same lines: they differ only in line endings (CRLF or LF) or the final newline."
                return
            diff = list(difflib.unified_diff(ours_text.splitlines(), theirs_text.splitlines(),
                                             f"data/{path} (yours)", "S3 (theirs, saved)", lineterm="", n=2))
            for line in diff[:DIFF_LINES]:
                shown = printable(line)
                yield "  " + (shown[:LINE_CHARS] + f" ... ({len(shown) - LINE_CHARS:,} more characters)"
                              if len(shown) > LINE_CHARS else shown)
            if len(diff) > DIFF_LINES:
                yield (f"  ... {len(diff) - DIFF_LINES} more diff lines: compare the two files with a tool "
                       "of your own.")
            return
    yield (f"  not compared line by line (binary, or over {human_bytes(DIFF_BYTES)}): yours is "
           f"{human_bytes(ours_size)}, theirs {human_bytes(theirs_size)}.")


def _text(path: str) -> str | None:
    """A file's content as text, or None when it is not UTF-8 text."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        if b"\0" in data:
            return None
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def theirs(layout: Layout) -> dict[str, str]:
    """{path: ETag} of the versions `compare` saved."""
    return read_text_map(layout.theirs_json, THEIRS_LIMIT)


def held_since_compare(layout: Layout, plan, remote: Mapping) -> None:
    """Before a `push force`: a file whose S3 version `compare` saved goes only while S3
    still holds that version; otherwise it is a conflict again."""
    saved = theirs(layout)
    if not saved:
        return
    for planned in (plan.transfer, plan.delete):
        for path in [p for p in planned if p in saved and (p not in remote or remote[p].etag != saved[p])]:
            planned.remove(path)
            plan.conflicts[path] = CHANGED_SINCE if path in remote else DELETED_SINCE


def forget(layout: Layout, done: Iterable[str]) -> None:
    """Forget the saved versions of files a push or pull has just settled."""
    saved = theirs(layout)
    settled = [path for path in done if path in saved]
    if not settled:
        return
    into = Inside(os.path.join(layout.theirs, "data"))
    if os.path.islink(layout.theirs) or os.path.islink(layout.state):
        return  # never removes anything through a link
    for path in settled:
        del saved[path]
        try:
            os.remove(into(path))
        except (OSError, UnsafePath):
            pass
    try:
        write_json(layout.theirs_json, saved, indent=None)
    except OSError as err:
        log.debug("Could not write %s: %s", layout.theirs_json, err)

