"""What a run looks at: junk that never travels, `exclude` patterns, and one path.

Three things narrow a push, pull or status, on both sides alike:

- Junk that operating systems and editors leave in folders (JUNK_DESCRIPTION)
  is never pushed, pulled, deleted or counted as a change.
- ``exclude`` patterns (project and global config) follow .gitignore's rules,
  matched against paths inside data/ (by pathspec, the library that implements
  them). Excluded paths are as invisible as junk; objects already on S3 stay.
- A path word (``datakit data pull data/raw/2024``) limits the run to that file
  or folder. The rest of data/ and of the sync record is left as it is.
"""
import functools
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .exceptions import FlagError
from .names import key_problem, printable

if TYPE_CHECKING:
    import pathspec

#: Shown in the docs and by `datakit data status`.
JUNK_DESCRIPTION = (
    ".DS_Store, ._* (macOS), Thumbs.db, ehthumbs.db, desktop.ini (Windows), ~$* (Office lock files), "
    ".~lock.*# (LibreOffice lock files), .ipynb_checkpoints/ (Jupyter), "
    ".datakit-data-*.part (datakit-data's own copies being written)"
)


# One search per path: junk names (case ignored, as Windows and macOS do) as the last
# part of the path, or a junk folder anywhere in it.
_JUNK = re.compile(
    r"(?:^|/)(?:\.ds_store|thumbs\.db|ehthumbs\.db|desktop\.ini|~\$[^/]*|\._[^/]*|\.~lock\.[^/]*#"
    r"|\.datakit-data-[^/]*\.part)$"
    r"|(?:^|/)\.ipynb_checkpoints/",
    re.IGNORECASE,
)


def is_junk(path: str) -> bool:
    """Is this path (inside data/; a folder ends with /) junk that never travels?"""
    return _JUNK.search(path) is not None


@functools.lru_cache(maxsize=8)
def exclude_spec(patterns: tuple[str, ...]) -> "pathspec.GitIgnoreSpec | None":
    """The compiled exclude patterns (None when there are none)."""
    if not patterns:
        return None
    # Imported here: about 20 ms that a project without patterns never needs.
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(patterns)


def pattern_problem(pattern: str) -> str | None:
    """Why this exclude pattern cannot be used, or None."""
    import pathspec  # only configs that hold patterns pay for it (about 20 ms)

    try:
        pathspec.GitIgnoreSpec.from_lines([pattern]).match_file("x")
    except (ValueError, TypeError, re.error) as err:  # pathspec's own errors are ValueErrors
        return str(err) or "not a .gitignore pattern"
    return None


@functools.lru_cache(maxsize=65536)
def _folder_excluded(patterns: tuple[str, ...], folder: str) -> bool:
    """Is this folder ("a/b/") excluded, itself or through a folder above it?"""
    parent = folder[:-1].rpartition("/")[0]
    if parent and _folder_excluded(patterns, parent + "/"):
        return True
    return exclude_spec(patterns).match_file(folder)


def split_words(words: list[str]) -> tuple[list[str], list[str]]:
    """(flag words, path words): a word naming data/ or a path below it is a path."""
    flags, paths = [], []
    for word in words:
        path = word in ("data", "data/") or "/" in word or word.startswith(".") or (os.sep != "/" and os.sep in word)
        (paths if path else flags).append(word)
    return flags, paths


def check_path(word: str) -> str:
    """A path word as a path inside data/ ("" for data/ itself; a folder ends with /)."""
    fix = "Name a file or folder inside data/, as the shell completes it from the project's folder (e.g. data/raw/)."
    given = word
    if os.sep != "/":
        word = word.replace(os.sep, "/")  # data\raw\ as Windows shells complete it
    while word.startswith("./"):
        word = word[2:]
    if word in ("data", "data/"):
        return ""
    if not word.startswith("data/"):
        raise FlagError(f'"{printable(given)}" is not inside data/. {fix}')
    inner = word[len("data/"):]
    folder = inner.endswith("/")
    inner = inner.rstrip("/")
    why = key_problem(inner)
    if why:
        raise FlagError(f'"{printable(given)}" cannot be synced: {why}. {fix}')
    return inner + ("/" if folder else "")


@dataclass(frozen=True)
class Selection:
    """The part of data/ a run looks at.

    ``path``: "" for all of data/, a folder ("raw/2024/") or a file ("raw/x.csv").
    ``patterns``: the exclude patterns of both configs.
    """

    path: str = ""
    patterns: tuple[str, ...] = ()

    @property
    def root(self) -> str:
        """The folder the AWS CLI syncs and the listing reads ("" or ending with /)."""
        if not self.path or self.path.endswith("/"):
            return self.path
        return self.path.rpartition("/")[0] + "/" if "/" in self.path else ""

    @property
    def file(self) -> str | None:
        """The one file the run looks at, or None (all of data/, or a folder)."""
        return self.path if self.path and not self.path.endswith("/") else None

    def as_folder(self) -> "Selection":
        return Selection(self.path.rstrip("/") + "/", self.patterns) if self.path else self

    def covers(self, path: str) -> bool:
        """Is this file path part of the run?"""
        if not self.path:
            return True
        return path.startswith(self.path) if self.path.endswith("/") else path == self.path

    def reaches(self, folder: str) -> bool:
        """Can this folder ("a/b/") hold a file of the run?"""
        if not self.path:
            return True
        return folder.startswith(self.path) or self.path.startswith(folder) if self.path.endswith("/") \
            else self.path.startswith(folder)

    def left_out(self, path: str) -> bool:
        """Is this path (a folder ends with /) junk or excluded, itself or through a folder
        above it? The same answer for a file in data/, an object and a record entry."""
        if _JUNK.search(path):
            return True
        if not self.patterns:
            return False
        if path.endswith("/"):
            return _folder_excluded(self.patterns, path)
        parent = path.rpartition("/")[0]
        if parent and _folder_excluded(self.patterns, parent + "/"):
            return True
        return exclude_spec(self.patterns).match_file(path)
