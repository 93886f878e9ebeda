"""What a run looks at: junk that never travels, `exclude` patterns, and one path.

Three things narrow a push, pull or status, on both sides alike:

- Junk that operating systems and editors leave in folders (``_JUNK``: .DS_Store,
  Thumbs.db, Office and LibreOffice lock files, .ipynb_checkpoints/, ...) is never pushed, pulled, deleted or counted as a change.
- ``exclude`` patterns (project and global config) follow .gitignore's rules as
  git applies them (tested against git itself), matched against paths inside
  data/. Excluded paths are as invisible as junk; objects already on S3 stay.
- Path words (``datakit data pull data/raw/2024 data/clean/*.csv``) limit the run to
  those files and folders, read from the folder the command runs in. The rest of
  data/ and of the sync record is left as it is.
"""
import functools
import os
import posixpath
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterable

from .exceptions import FlagError
from .flags import ACCEPTED as FLAG_WORDS
from .names import key_problem, printable

DATA_FOLDER = "data"
#: The folder at the top of s3_path that holds the project's marker (claim.py).
PROJECT_FOLDER = ".datakit/"

# One search per path: junk names (case ignored, as Windows and macOS do) as the last
# part of the path, or a junk folder anywhere in it.
_JUNK = re.compile(
    r"(?:^|/)(?:\.ds_store|thumbs\.db|ehthumbs\.db|desktop\.ini|~\$[^/]*|\._[^/]*|\.~lock\.[^/]*#"
    r"|\.datakit-data-[^/]*\.part)$"
    r"|(?:^|/)\.ipynb_checkpoints/",
    re.IGNORECASE,
)
#: The project's marker folder at the top of s3_path (claim.py): never data, on either
#: side (a local data/.datakit/project.json would be pushed over the marker). S3 keys
#: are case-sensitive: .DATAKIT/ is data.
_MARKER_FOLDER = ".datakit/"


def _could_be_junk(path: str) -> bool:
    """False for most paths, sooner than _JUNK answers: every junk name starts with "." or
    "~", or ends in "s.db" or ".ini" (case ignored)."""
    return path[:1] in (".", "~") or "/." in path or "/~" in path or path[-4:].lower() in ("s.db", ".ini")


@dataclass(frozen=True)
class _Rule:
    """One .gitignore line: matches a whole path (never "everything below it")."""

    negated: bool
    folders_only: bool  # the line ended with /
    regex: "re.Pattern[str]"


def _glob_regex(glob: str) -> str:
    """A .gitignore glob (without its leading or trailing /) as a regular expression."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i) and (i == 0 or glob[i - 1] == "/"):
            out.append("(?:[^/]*/)*")  # any folders, none included
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")  # everything inside
            i += 3
        elif c == "*":
            out.append("[^/]*")
            i += 2 if glob.startswith("**", i) else 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        elif c == "[":
            end = glob.find("]", i + 2 if glob.startswith(("[!", "[^", "[]"), i) else i + 1)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1:end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _rule(line: str) -> "_Rule | None":
    """A .gitignore line as a rule; None for a blank line or a comment."""
    line = unicodedata.normalize("NFC", line)
    # Trailing spaces are dropped unless escaped with a backslash.
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(line):
        stripped += " "
    line = stripped
    if not line or line.startswith("#"):
        return None
    if (len(line) - len(line.rstrip("\\"))) % 2:
        raise ValueError("it ends with a lone backslash, which escapes nothing")
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    folders_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line  # a slash at the start or in the middle: relative to data/
    line = line.lstrip("/")
    regex = _glob_regex(line)
    if not anchored:
        regex = "(?:.*/)?" + regex  # a bare name matches at any depth
    return _Rule(negated, folders_only, re.compile(regex + r"\Z", re.DOTALL))


@functools.lru_cache(maxsize=8)
def exclude_rules(patterns: tuple[str, ...]) -> tuple[_Rule, ...]:
    """The compiled exclude patterns, last first (the last that matches decides)."""
    return tuple(reversed([rule for rule in map(_rule, patterns) if rule is not None]))


def _ignored(rules: tuple[_Rule, ...], path: str, folder: bool) -> bool:
    """Does the last rule matching this path (a folder's without its /) exclude it?"""
    for rule in rules:
        if rule.folders_only and not folder:
            continue
        if rule.regex.match(path):
            return not rule.negated
    return False


def pattern_problem(pattern: str) -> str | None:
    """Why this exclude pattern cannot be used, or None."""
    try:
        _rule(pattern)
    except ValueError as err:
        return str(err)
    except re.error as err:
        return f"a character class git cannot read ({err})"
    return None


@functools.lru_cache(maxsize=65536)
def _folder_excluded(patterns: tuple[str, ...], folder: str) -> bool:
    """Is this folder ("a/b/") excluded, itself or through a folder above it? As in git,
    nothing inside an excluded folder can be brought back by a later "!" pattern."""
    parent = folder[:-1].rpartition("/")[0]
    if parent and _folder_excluded(patterns, parent + "/"):
        return True
    return _ignored(exclude_rules(patterns), folder[:-1], folder=True)


def split_words(words: list[str], here: str = "", exists: Callable[[str], bool] = os.path.lexists
                ) -> tuple[list[str], list[str]]:
    """(flag words, path words as paths from the project's folder, e.g. "data/raw/x.csv").

    ``here``: the folder the command runs in, from the project's folder ("" at its top,
    "data/raw" in data/raw/). A word is a path when it names data/, holds a slash or
    starts with ".", when it names something that exists here (what the shell's
    completion and globs give), or anywhere inside data/ when it is no flag word. Paths
    are read from where the command runs, as git reads them; a word starting with data/
    that names nothing here is read from the project's folder (as status prints paths).
    """
    flags, paths = [], []
    inside_data = here == DATA_FOLDER or here.startswith(DATA_FOLDER + "/")
    for word in words:
        bare = word.strip().lower()
        if inside_data and bare in FLAG_WORDS and exists(word):
            raise FlagError(
                f'"{printable(word)}" is both a flag word and a file or folder here: write ./{printable(word)} '
                "for the path, or run the command from the project's folder for the flag word."
            )
        path = (word in ("data", "data/") or "/" in word or word.startswith(".") or os.path.isabs(word)
                or (os.sep != "/" and os.sep in word)
                or (bare not in FLAG_WORDS and not bare.startswith("-") and (inside_data or exists(word))))
        if path:
            paths.append(_from_project(word, here, exists))
        else:
            flags.append(word)
    return flags, paths


def _from_project(word: str, here: str, exists: Callable[[str], bool]) -> str:
    """A path word as typed in ``here``, as the path from the project's folder."""
    if os.path.isabs(word):
        return word  # check_path names it: not inside data/ (a caller gives relative ones)
    typed = word.replace(os.sep, "/") if os.sep != "/" else word
    if not here or (typed.startswith(DATA_FOLDER + "/") and not exists(word)):
        return typed
    joined = posixpath.normpath(posixpath.join(here, typed))
    folder = typed.endswith("/") or typed in (".", "..") or typed.endswith(("/.", "/.."))
    return joined + ("/" if folder and joined != "." else "")


def check_path(word: str) -> str:
    """A path word as a path inside data/ ("" for data/ itself; a folder ends with /)."""
    fix = ("Name a file or folder inside data/, as the shell completes it (from the project's folder: "
           "data/raw/; from data/raw/: x.csv).")
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


def _parents(path: str) -> set[str]:
    """Every folder above a path inside data/ ("a/", "a/b/" for "a/b/c")."""
    parts = path.rstrip("/").split("/")[:-1]
    return {"/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)}


@dataclass(frozen=True)
class Selection:
    """The part of data/ a run looks at.

    ``paths``: files ("raw/x.csv") and folders ("raw/2024/"), none inside another;
    () for all of data/. ``patterns``: the exclude patterns of both configs.
    """

    paths: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, paths: Iterable[str], patterns: tuple[str, ...] = ()) -> "Selection":
        """A selection of these paths ("" for all of data/): repeats and paths inside a
        chosen folder dropped, sorted."""
        chosen = set(paths)
        if "" in chosen:
            return cls((), patterns)
        folders = tuple(p for p in chosen if p.endswith("/"))
        kept = {p for p in chosen if not any(p != f and p.startswith(f) for f in folders)}
        return cls(tuple(sorted(kept)), patterns)

    @functools.cached_property
    def _files(self) -> frozenset:
        return frozenset(p for p in self.paths if not p.endswith("/"))

    @functools.cached_property
    def _folders(self) -> tuple[str, ...]:
        return tuple(p for p in self.paths if p.endswith("/"))

    @functools.cached_property
    def _above(self) -> frozenset:
        """Every folder that holds a chosen path."""
        return frozenset(folder for p in self.paths for folder in _parents(p))

    @property
    def shown(self) -> str:
        """The selection as the user named it: "data/", or "data/raw/, data/x.csv"."""
        return ", ".join(f"data/{printable(p)}" for p in self.paths) or "data/"

    @property
    def root(self) -> str:
        """The deepest folder holding every chosen path: the folder the AWS CLI syncs and
        the listing reads ("" or ending with /)."""
        folders = [p if p.endswith("/") else p.rpartition("/")[0] + "/" if "/" in p else "" for p in self.paths]
        if not folders:
            return ""
        common = os.path.commonprefix(folders)
        return common[:common.rfind("/") + 1]

    @property
    def file(self) -> str | None:
        """The one file the run looks at, or None (all of data/, folders, or several paths)."""
        return self.paths[0] if len(self.paths) == 1 and not self.paths[0].endswith("/") else None

    def with_paths(self, paths: Iterable[str]) -> "Selection":
        return Selection.of(paths, self.patterns)

    def covers(self, path: str) -> bool:
        """Is this file path part of the run?"""
        if not self.paths:
            return True
        return path in self._files or (bool(self._folders) and path.startswith(self._folders))

    def reaches(self, folder: str) -> bool:
        """Can this folder ("a/b/") hold a file of the run?"""
        if not self.paths:
            return True
        return folder in self._above or (bool(self._folders) and folder.startswith(self._folders))

    def left_out(self, path: str) -> bool:
        """Is this path (a folder ends with /) junk or excluded, itself or through a folder
        above it? The same answer for a file in data/, an object and a record entry."""
        if _could_be_junk(path) and (_JUNK.search(path) or path.startswith(_MARKER_FOLDER)):
            return True
        if not self.patterns:
            return False
        # Patterns typed in NFC match the NFD names macOS writes, as macOS's git does.
        path = unicodedata.normalize("NFC", path)
        if path.endswith("/"):
            return _folder_excluded(self.patterns, path)
        parent = path.rpartition("/")[0]
        if parent and _folder_excluded(self.patterns, parent + "/"):
            return True
        return _ignored(exclude_rules(self.patterns), path, folder=False)
