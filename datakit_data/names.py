"""Object keys and file names come from outside: check them before they become paths.

Anyone who can write to the bucket chooses the keys a pull turns into local paths,
and anyone who can write to data/ chooses the names a push sends. A key such as
``p//home/me/notes.txt`` (remote path ``/home/me/notes.txt``), ``p/../../x``, or one
holding an ESC sequence or a newline must never become a path outside ``data/``
nor reach the terminal raw. So:

- ``key_problem`` says why a path (relative to data/ or s3_path) cannot be a local
  file, and ``refused_keys`` adds the clashes between keys (``a`` beside ``a/b``;
  names differing only by case on a case-insensitive file system). Refused keys are
  skipped and named; nothing is ever written for them.
- ``inside`` is called at every place that writes, moves or deletes: it resolves the
  path (links included) and refuses one that is not inside the folder it must be in.
- ``printable`` escapes control characters, so that one name prints as one line.
"""
import os
import re
import unicodedata
from typing import Iterable

from .exceptions import DatakitDataError

#: The longest file name (one path segment) most file systems take, in bytes.
NAME_MAX = 255
#: The characters the AWS CLI appends to a file's name while it downloads it.
DOWNLOAD_SUFFIX = 9
#: S3's longest key, in bytes.
KEY_MAX = 1024


class UnsafePath(DatakitDataError):
    """A path that would resolve outside the folder it must stay in."""


#: Characters that reorder or hide text on screen: bidi controls, zero-width space,
#: word joiner, BOM ("Trojan Source"). Zero-width joiners stay: emoji need them.
_HIDING = {0x200B, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2060, 0x2065), *range(0x2066, 0x206A), 0xFEFF}


# The same characters as one pattern: keys are checked three times per file per run
# (scan, listing, record), so on 100,000 files a per-character loop costs seconds.
CONTROL_CHARACTERS = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *_HIDING))
_CONTROL = re.compile("[" + "".join(re.escape(c) for c in sorted(CONTROL_CHARACTERS)) + "]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_control(char: str) -> bool:
    """C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the
    characters that reorder or hide text."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029) or code in _HIDING


def printable(text: str, keep: str = "") -> str:
    """text with control characters and undecodable bytes escaped (\\x1b, \\n, \\udcff -> \\xff);
    the characters in ``keep`` (e.g. line ends) stay as they are."""
    out = []
    for char in str(text):
        if char in keep:
            out.append(char)
            continue
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append(char)
        elif _is_control(char) or 0xD800 <= code <= 0xDFFF:
            out.append(char.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


#: A path of plain ASCII names, none starting with a dot: no problem a key can have,
#: found in one match (keys are checked three times per file per run).
_PLAIN = re.compile(r"[A-Za-z0-9_\-+=,@ ()][A-Za-z0-9_.\-+=,@ ()]*(?:/[A-Za-z0-9_\-+=,@ ()][A-Za-z0-9_.\-+=,@ ()]*)*")


def key_problem(path: str, name_max: int = NAME_MAX) -> str | None:
    """Why this path (relative to data/ or to s3_path) cannot be a local file, or None."""
    if len(path) <= name_max - DOWNLOAD_SUFFIX and _PLAIN.fullmatch(path):
        return None  # every name short enough, and none of the characters below
    return full_key_problem(path, name_max)


def full_key_problem(path: str, name_max: int = NAME_MAX) -> str | None:
    """key_problem without its shortcut for plain names (which a test holds it to)."""
    if not path:
        return "an empty name"
    if path.startswith("/"):
        return "an absolute path"
    if path.endswith("/"):
        return "a name ending in /, which only folders have"
    if "\\" in path:
        return "a backslash, which is a folder separator on Windows"
    if _CONTROL.search(path):
        return "a control or invisible character in the name"
    if _SURROGATE.search(path):
        return "a name that is not valid UTF-8"
    for segment in path.split("/"):
        if segment == "":
            return "an empty folder name (//)"
        if segment in (".", ".."):
            return f'a "{segment}" folder name'
        if len(segment.encode("utf-8")) > name_max:
            return f"a name longer than {name_max} bytes"
    # The AWS CLI downloads into the name's first (name_max - 9) characters, not bytes,
    # plus "." and 8 hex digits: a long name of many-byte characters cannot be written.
    name = path.rpartition("/")[2]
    if len(name[:name_max - DOWNLOAD_SUFFIX].encode("utf-8")) + DOWNLOAD_SUFFIX > name_max:
        return (f"a name the AWS CLI cannot download: with the {DOWNLOAD_SUFFIX} characters it adds while "
                f"downloading, longer than {name_max} bytes")
    return None


def _folded(path: str) -> str:
    # Case-insensitive file systems (macOS, Windows) also treat composed and
    # decomposed accents (é and e + ´) as one name.
    return unicodedata.normalize("NFD", path).lower()


def refused_keys(paths: Iterable[str], case_insensitive: bool = False, name_max: int = NAME_MAX,
                 path_max: int | None = None) -> dict[str, str]:
    """{path: why} for the paths that must not become local files.

    ``path_max``: the longest path (in bytes, relative to data/) this file system
    can take below the deepest folder datakit-data writes in.
    """
    refused = {}
    for path in paths:
        why = key_problem(path, name_max)
        if not why and path_max is not None and len(path.encode("utf-8")) > path_max:
            why = "a path too long for this file system"
        if why:
            refused[path] = why
    valid = sorted(p for p in paths if p not in refused)
    fold = _folded if case_insensitive else str
    # Every folder of every path: the parents first (few, against many paths), then
    # the folders above each parent once.
    folders = set()
    for parent in {path.rpartition("/")[0] for path in valid}:
        while parent and parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    folders = {fold(folder) for folder in folders}
    for path in valid:
        if fold(path) in folders:
            refused[path] = "a file with the same name as a folder on S3"
    if case_insensitive:
        by_case: dict[str, list[str]] = {}
        for path in valid:
            by_case.setdefault(_folded(path), []).append(path)
        for group in by_case.values():
            for path in group[1:]:
                refused.setdefault(
                    path, f"differs only by case or accents from {printable(group[0])}, on a file system that "
                    "ignores case")
    return refused


def is_case_insensitive(folder: str) -> bool:
    """Does the file system holding folder treat a and A as one name? (Writes nothing.)"""
    head, name = os.path.split(os.path.abspath(folder))
    swapped = name.swapcase()
    if swapped == name:
        return False
    try:
        return os.path.samefile(folder, os.path.join(head, swapped))
    except OSError:
        return False


def inside(base: str, relative: str) -> str:
    """base/relative, refused unless it resolves (links followed) inside base."""
    return Inside(base)(relative)


class Inside:
    """``inside`` for the many paths one loop writes under one base (data/ or a staging
    folder): the base and each folder are resolved once per loop, not once per path
    (os.path.realpath takes 30-60 us; a pull of 100,000 files asked it 400,000 times).
    Keep one for one loop only: a folder replaced by a link afterwards is not seen."""

    def __init__(self, base: str):
        self.base = base
        self.root = os.path.realpath(base)
        self._resolved: dict[str, str] = {}
        self._made: set[str] = set()

    def __call__(self, relative: str) -> str:
        root = self.root
        target = os.path.join(root, relative)
        # The folder it lands in, resolved, must be root or below it. (A link as the
        # name itself is replaced or removed, never written through, by our callers.)
        folder = os.path.dirname(target)
        parent = self._resolved.get(folder)
        if parent is None:
            parent = self._resolved[folder] = os.path.realpath(folder)
        if parent != root and not parent.startswith(root + os.sep):
            raise UnsafePath(f"{printable(relative)} leads outside {self.base}")
        name = os.path.basename(target)
        if name in ("", ".", ".."):
            raise UnsafePath(f"{printable(relative)} is not a file name inside {self.base}")
        return os.path.join(parent, name)

    def prepared(self, relative: str) -> str:
        """``self(relative)``, with the folder it lands in made (once per loop)."""
        target = self(relative)
        folder = os.path.dirname(target)
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        return target
