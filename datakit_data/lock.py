"""One push or pull at a time in a project.

Two syncs of the same data/ at once would race each other (and, with delete,
undo each other's work). The lock is an flock on ``.datakit-data/lock`` in the
project folder, so the system releases it when a process dies: no stale locks.
"""
import contextlib
import os

from .exceptions import DatakitDataError
from .layout import Layout



@contextlib.contextmanager
def project_lock(layout: Layout, direction: str):
    """Hold the project's sync lock, or refuse at once if another run holds it."""
    import fcntl  # POSIX only, imported here so that the package imports elsewhere

    folder = layout.state
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise DatakitDataError(
            f"{folder} is not a folder: datakit-data keeps its lock and sync record there. "
            "Move that file away and run the command again."
        )
    os.makedirs(folder, exist_ok=True)
    path = layout.lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another datakit data command"
            raise DatakitDataError(
                f"{holder} is already running in this project ({os.path.relpath(layout.lock, layout.root)}). "
                f"Wait for it to finish, then run `datakit data {direction}` again."
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"`datakit data {direction}` (pid {os.getpid()})\n".encode())
        yield
    finally:
        os.close(fd)
