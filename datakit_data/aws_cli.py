"""The AWS CLI's arguments for a push or a pull, built by pure functions.

They are run by the engine (engine/cli.py): `aws s3 sync` of a staging folder,
with filters that keep a pull to the planned objects where the sync's listing
cannot be answered, and the listing entries that answer it where it can.
"""
import fnmatch
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, Mapping, Sequence

from . import names
from .exceptions import SyncError
from .masking import mask_secrets, without_credentials
from .names import printable
from .plan import Remote
from .settings import CONNECT_TIMEOUT, READ_TIMEOUT, Settings

LOCAL_DATA = "data/"

def connection_options(settings: Settings) -> list[str]:
    """--profile and --endpoint-url when the config asks for them, and a connect timeout."""
    options = ["--cli-connect-timeout", str(CONNECT_TIMEOUT), "--cli-read-timeout", str(READ_TIMEOUT)]
    if settings.profile:
        options += ["--profile", settings.profile]
    if settings.endpoint_url:
        options += ["--endpoint-url", without_credentials(settings.endpoint_url)]
    return options


def upload_args(settings: Settings, options: Sequence[str], root: str = "") -> list[str]:
    """The AWS CLI's arguments for `aws s3 sync data/ s3://bucket/path/`: upload a staged
    data/ folder (or its folder root)."""
    return ["s3", "sync", LOCAL_DATA + root, settings.s3_url + root, *options, *connection_options(settings)]


def download_args(settings: Settings, options: Sequence[str], root: str = "") -> list[str]:
    """The AWS CLI's arguments for `aws s3 sync s3://bucket/path/ data/`: download into a
    staged data/ folder (or its folder root)."""
    return ["s3", "sync", settings.s3_url + root, LOCAL_DATA + root, *options, *connection_options(settings)]


#: Bytes of ``--exclude`` patterns one command line can carry (Linux allows 2 MiB
#: for arguments and environment together).
MAX_EXCLUDE_BYTES = 1024 * 1024
#: Include patterns beyond which a pull stands skipped objects in by placeholders.
#: The AWS CLI tests every object against every pattern (about 2 us each), while a
#: placeholder costs about 40 us per object it stands in for (made, listed, compared).
MAX_INCLUDES = 20


def _pattern(path: str) -> str:
    """An fnmatch pattern under s3_path matching this path only."""
    # [*] [?] [[] match themselves; a leading [/] keeps the AWS CLI from reading the
    # pattern as an absolute path.
    pattern = "".join(f"[{c}]" if c in "*?[" else c for c in path)
    return "[/]" + pattern[1:] if pattern.startswith("/") else pattern


#: Patterns that each leave out a whole family of keys that can never be files here
#: (names.key_problem refuses every key they match, so no wanted key matches one):
#: the AWS CLI tests every object against every pattern, so 1,000 refused keys as
#: 1,000 patterns cost 10,000 objects 50 s; as a few families, a second.
REFUSED_FAMILIES = (
    # A backslash (not on Windows, where the AWS CLI reads it as the folder separator).
    *(("*[\\]*",) if os.sep == "/" else ()),
    "*[" + "".join(sorted(names.CONTROL_CHARACTERS - {"\x00", "]", "^", "!", "-", "\\"})) + "]*",
    "*//*", "[/]*", "*/",  # an empty folder name, an absolute path, a name ending in /
    "./*", "*/./*", "*/.", "../*", "*/../*", "*/..", ".", "..",
)


def exclude_options(paths: Iterable[str]) -> list[str]:
    """``--exclude`` options that leave out these paths under s3_path: a family
    pattern for keys of a refused kind, each other path by itself."""
    paths = sorted(paths)
    families = [re.compile(fnmatch.translate(f)) for f in REFUSED_FAMILIES]
    used = set()
    alone = []
    for path in paths:
        hit = next((i for i, family in enumerate(families) if family.match(path)), None)
        if hit is None:
            alone.append(path)
        else:
            used.add(hit)
    options = []
    for i in sorted(used):
        options += ["--exclude", REFUSED_FAMILIES[i]]
    paths = alone
    if sum(len(p.encode("utf-8", "surrogateescape")) + 16 for p in paths) > MAX_EXCLUDE_BYTES:
        raise SyncError(
            f"{len(paths)} objects have keys that cannot be files here, e.g. "
            f"{printable(paths[0])}: too many to leave out safely. Rename or remove them on S3."
        )
    for path in paths:
        options += ["--exclude", _pattern(path)]
    return options


@dataclass(frozen=True)
class PullScope:
    """How one `aws s3 sync` downloads exactly the planned objects and no other."""

    options: list[str]  # filter options for the AWS CLI
    placeholders: list[str]  # paths to stand in for with a placeholder of the object's size
    clashes: list[str] = field(default_factory=list)  # wanted, but no pattern can tell them apart


def pull_scope(wanted: Collection[str], present: Iterable[str], refused: Iterable[str],
               fold: Callable[[str], str] = os.path.normcase) -> PullScope:
    """Restrict a pull to ``wanted`` among every object under s3_path (``present``, and
    the ``refused`` keys that can never be files here).

    A folder whose objects are all wanted is one pattern ("raw/*"), any other wanted
    object its own. Up to MAX_INCLUDES patterns, the AWS CLI is told `--exclude "*"`
    and to include those: nothing else is touched, whatever its size. Beyond that (a
    large plan spread over folders), every object not wanted is stood in for by a
    placeholder of its size and an older time, which sync leaves alone, and refused
    keys are excluded by name.

    The AWS CLI matches patterns through ``fold`` (os.path.normcase: on Windows it
    ignores case and reads / and \\ as one). A wanted object whose folded name is
    that of an object that must not be downloaded is a clash: it is left out too.
    """
    present = list(present)
    refused = sorted(refused)
    wanted = set(wanted)
    folding = fold("A/") != "A/"

    def folded(path: str) -> str:
        return fold(path).replace("\\", "/") if folding else path

    unwanted = {folded(p) for p in (*present, *refused) if p not in wanted}
    clashes = sorted(p for p in wanted if folded(p) in unwanted) if folding else []
    wanted.difference_update(clashes)
    unwanted.update(folded(p) for p in clashes)
    # Folders holding (at any depth) an object that must not be downloaded; "" is s3_path.
    mixed = set()
    for folder in {p.rpartition("/")[0] for p in unwanted}:
        while folder not in mixed:
            mixed.add(folder)
            if not folder:
                break
            folder = folder.rpartition("/")[0]
    if "" not in mixed:
        return PullScope([], [])  # everything is wanted
    patterns = set()
    for path in wanted:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folded(folder) not in mixed:
                patterns.add(_pattern(folder) + "/*")
                break
        else:
            patterns.add(_pattern(path))
        if len(patterns) > MAX_INCLUDES:
            return PullScope(exclude_options(refused), [p for p in present if p not in wanted], clashes)
    options = ["--exclude", "*"]
    for pattern in sorted(patterns):
        options += ["--include", pattern]
    return PullScope(options, [], clashes)


def plain_root(root: str) -> str:
    """The folder (of root, or above it) that an `aws s3 sync` may run from: the AWS CLI
    joins its filter patterns onto that folder unescaped, so a folder name holding
    * ? or [ would turn every pattern into a wildcard ("raw[1]/" matches "raw1/")."""
    plain = []
    for part in root.split("/")[:-1]:
        if any(c in part for c in "*?["):
            break
        plain.append(part + "/")
    return "".join(plain)


def under_folder(options: Sequence[str], inner: str) -> list[str]:
    """Filter options written for the folder ``inner`` (below the one the AWS CLI runs
    from), for that folder: each pattern is prefixed with it, escaped, and nothing
    outside it is downloaded."""
    if not inner:
        return list(options)
    prefix = _pattern(inner)
    moved = []
    for i in range(0, len(options), 2):
        flag, pattern = options[i], options[i + 1]
        if (flag, pattern) == ("--exclude", "*"):
            continue
        moved += [flag, prefix + pattern.removeprefix("[/]").lstrip("/")]
    return ["--exclude", "*", "--include", prefix + "*", *moved] if "--include" not in moved \
        else ["--exclude", "*", *moved]


def describe(args: Sequence[str]) -> str:
    """The AWS CLI command line of these arguments as a user could type it, with no
    secret and no control character."""
    return printable(mask_secrets(shlex.join(["aws", *args])))


def listing_entries(settings: Settings, objects: Mapping[str, Remote]) -> list[dict]:
    """What a ListObjectsV2 page says of these objects (paths under s3_path), for
    answer_listings."""
    prefix = settings.key_prefix
    return [{"Key": prefix + path, "Size": obj.size, "ETag": f'"{obj.etag}"', "LastModified": obj.last_modified}
            for path, obj in objects.items()]
