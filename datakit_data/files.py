"""Writing files so that nothing is ever left half-written, and moving downloads in.

Every file datakit-data writes (a copy into data/, the sync record, the config
files, the lock's note) is written beside its target under a temporary name and
renamed over it when whole: a full disk or a killed run leaves the old file or
none, never a part. The temporary names in data/ are ones no run syncs
(``is_our_temporary``).
"""
import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from typing import Iterator

from . import names

#: Our temporary files in data/: a copy being written.
TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".datakit-data-", ".part"


def is_our_temporary(name: str) -> bool:
    """Is this file name one of our temporary copies (never synced, removed when found)?"""
    return name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX)


def remove_temporary(path: str) -> None:
    """Remove a temporary copy a killed run left (a regular file only, never a link)."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


@contextlib.contextmanager
def written_beside(target: str, prefix: str = TEMPORARY_PREFIX, suffix: str = TEMPORARY_SUFFIX) -> Iterator[str]:
    """The path of a new, empty file beside ``target`` (readable by the user only) to
    write; renamed over ``target`` when the block ends well, removed when it fails."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=os.path.dirname(target) or ".")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str, data: object, indent: int | None = 4) -> None:
    """Write JSON so that the file is either complete or not there at all (indented for
    people to read; ``indent=None`` for the sync record, which Python's fast encoder
    writes 10 times sooner)."""
    with written_beside(path, suffix=".tmp") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=indent))
        fh.write("\n")


def copy_into(source: str, target: str, mtime_ns: int | None = None) -> None:
    """Copy source to target, whole or not at all. ``mtime_ns``: the copy's time, else
    the source's."""
    with written_beside(target) as tmp:
        shutil.copy2(source, tmp)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))


def link_or_copy(source: str, target: str) -> None:
    """A hard link to source at target, or a copy where links cannot be made."""
    try:
        os.link(source, target, follow_symlinks=True)
    except FileNotFoundError:
        raise
    except OSError:  # another file system, or no hard links there
        copy_into(source, target)


def is_file_of_size(path: str, size: int) -> bool:
    """Is path a regular file (links followed) of this size?"""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def as_scanned(path: str, before) -> bool:
    """Does path still hold what the scan saw there (``before``, a plan.Local; None: nothing)?"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return before is None
    return before is not None and (st.st_size, st.st_mtime_ns, st.st_ino) == (before.size, before.mtime_ns, before.ino)


def move_into(staged: str, target: str, before) -> bool:
    """Move a download into data/ unless the file there changed since the scan."""
    if before is None:
        # Nothing was there: a link fails, rather than replaces, if a file appeared.
        try:
            os.link(staged, target)
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            if os.path.lexists(target):
                return False
            copy_into(staged, target)
        os.unlink(staged)
        return True
    if not as_scanned(target, before):
        return False
    try:
        os.replace(staged, target)
    except OSError as err:
        if err.errno != errno.EXDEV:  # data/ on another disk than the staging folder
            raise
        copy_into(staged, target)
    return True


def placeholder(path: str, size: int) -> None:
    """An empty file of this size and an old time, which `aws s3 sync` leaves alone.

    It is sparse (no disk space, nothing written) on Linux and APFS; on NTFS it is
    marked sparse first. HFS+ has no sparse files: there it takes its size on disk.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        if os.name == "nt":
            _mark_sparse(fh.fileno())
        fh.truncate(size)
    os.utime(path, ns=(0, 0))


def _mark_sparse(fd: int) -> None:
    """FSCTL_SET_SPARSE on a Windows file: extending it then allocates nothing."""
    # Windows only: ctypes.windll and msvcrt exist nowhere else.
    import ctypes
    import msvcrt
    from ctypes import wintypes

    returned = wintypes.DWORD()
    ctypes.windll.kernel32.DeviceIoControl(
        wintypes.HANDLE(msvcrt.get_osfhandle(fd)), 0x000900C4, None, 0, None, 0, ctypes.byref(returned), None)


def why(err: Exception) -> str:
    """A short reason for a file that could not be written, moved or removed."""
    if isinstance(err, names.UnsafePath):
        return "its folder in data/ is a link that leads outside data/"
    return (err.strerror or str(err)).lower()
