"""One push or pull at a time in a project.

Two syncs of the same data/ at once would race each other (and, with delete,
undo each other's work). The lock is a filelock on ``.datakit-data/lock``: an
OS lock (flock on Linux and macOS, LockFileEx on Windows) that the system
releases when a process dies. Who holds it is written to a separate file,
``running``, because filelock may empty or remove the lock file itself.
"""
import contextlib
import os
import re
from typing import Iterator

import filelock

from .exceptions import DatakitDataError
from .files import written_beside
from .layout import Layout, read_state_file

_HOLDER = re.compile(r"`datakit data (push|pull)` \(pid \d{1,10}\)")


@contextlib.contextmanager
def project_lock(layout: Layout, direction: str) -> Iterator[None]:
    """Hold the project's sync lock, or refuse at once if another run holds it."""
    folder = layout.state
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise DatakitDataError(
            f"{folder} is not a folder: datakit-data keeps its lock and sync record there. "
            "Move that file away and run the command again."
        )
    os.makedirs(folder, exist_ok=True)
    lock = filelock.FileLock(layout.lock, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise DatakitDataError(
            f"{_holder(layout)} is already running in this project ({os.path.relpath(layout.lock, layout.root)}). "
            f"Wait for it to finish, then run `datakit data {direction}` again."
        ) from None
    except OSError as err:
        raise DatakitDataError(
            f"Cannot take the project's lock {layout.lock}: {(err.strerror or str(err)).lower()}. "
            "If it is a folder or a link, move it away and run the command again."
        ) from err
    try:
        _write_holder(layout, f"`datakit data {direction}` (pid {os.getpid()})\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(layout.running)
        lock.release()


def _write_holder(layout: Layout, line: str) -> None:
    """Say who holds the lock, by a new file renamed over ``running`` (whatever was
    there, a link included, is replaced, never written through). Advisory: a failure
    changes nothing else."""
    with contextlib.suppress(OSError), written_beside(layout.running, prefix="running-", suffix="") as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(line)


def _holder(layout: Layout) -> str:
    """The command holding the lock, as it wrote itself down; read without following
    links or waiting on a FIFO, and only if it reads as we write it."""
    text = read_state_file(layout.running, 100).decode("utf-8", "replace").strip()
    return text if _HOLDER.fullmatch(text) else "another datakit data command"
