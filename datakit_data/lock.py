"""One push or pull at a time in a project.

Two syncs of the same data/ at once would race each other (and, with delete,
undo each other's work). The lock is a filelock on ``.datakit-data/lock``: an
OS lock (flock on Linux and macOS, LockFileEx on Windows) that the system
releases when a process dies, so no lock is ever stale. Who holds it is written
to a separate file, ``running``, because filelock may empty or remove the lock
file itself.
"""
import contextlib
import os
from typing import Iterator

import filelock

from .exceptions import DatakitDataError
from .layout import Layout


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
    try:
        with open(layout.running, "w", encoding="utf-8") as fh:
            fh.write(f"`datakit data {direction}` (pid {os.getpid()})\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(layout.running)
        lock.release()


def _holder(layout: Layout) -> str:
    """The command holding the lock, as it wrote itself down (first line, printable)."""
    try:
        with open(layout.running, encoding="utf-8", errors="replace") as fh:
            line = fh.readline(200).strip()
    except OSError:
        line = ""
    if not line.startswith("`datakit data ") or not line.isprintable():
        return "another datakit data command"
    return line
