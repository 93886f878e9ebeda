"""Pass-through flag words: `datakit data push delete dryrun` -> `--delete --dryrun`.

Only boolean options of `aws s3 sync` are accepted, written without dashes so that
datakit can tell them from its own options. Anything that takes a value, and any
word the AWS CLI would not know, is refused before a transfer starts.
"""
import difflib
from dataclasses import dataclass
from typing import Iterable

from .exceptions import FlagError

#: Boolean options of `aws s3 sync`.
SYNC_FLAGS = (
    "delete",
    "dryrun",
    "exact-timestamps",
    "follow-symlinks",
    "force-glacier-transfer",
    "ignore-glacier-warnings",
    "no-follow-symlinks",
    "no-guess-mime-type",
    "no-progress",
    "only-show-errors",
    "quiet",
    "size-only",
)
#: Global AWS CLI booleans that make sense for a sync.
GLOBAL_FLAGS = ("debug", "no-sign-request")
#: datakit-data's own word: resolve conflicts in favour of the side being sent.
OWN_FLAGS = ("force",)
ACCEPTED = SYNC_FLAGS + GLOBAL_FLAGS + OWN_FLAGS

#: Short options people type from other tools, as the flag word they mean (rsync's -n).
DASHED = {"-n": "dryrun", "--dry-run": "dryrun"}

#: Options of `aws s3 sync` (and global ones) that need a value.
VALUE_OPTIONS = (
    "acl", "ca-bundle", "cache-control", "checksum-algorithm", "checksum-mode",
    "cli-connect-timeout", "cli-read-timeout", "color", "content-disposition",
    "content-encoding", "content-language", "content-type", "endpoint-url",
    "exclude", "expected-size", "expires", "grants", "include", "metadata",
    "metadata-directive", "output", "page-size", "profile", "query", "region",
    "request-payer", "source-region", "sse", "sse-c", "sse-c-copy-source",
    "sse-c-copy-source-key", "sse-c-key", "sse-kms-key-id", "storage-class",
    "website-redirect",
)

#: Pairs of words that ask for opposite things.
CONFLICTS = (("follow-symlinks", "no-follow-symlinks"),)
#: Words datakit-data carries out itself, or that its sync record makes moot
#: (it decides what changed): never passed to the AWS CLI.
OWN_WORDS = ("delete", "dryrun", "force", "size-only", "exact-timestamps")


@dataclass(frozen=True)
class Flags:
    """What the flag words of one push or pull ask for."""

    words: tuple[str, ...] = ()

    @property
    def delete(self) -> bool:
        return "delete" in self.words

    @property
    def dryrun(self) -> bool:
        return "dryrun" in self.words

    @property
    def force(self) -> bool:
        return "force" in self.words

    @property
    def follow_symlinks(self) -> bool:
        return "no-follow-symlinks" not in self.words

    @property
    def unsigned(self) -> bool:
        return "no-sign-request" in self.words

    @property
    def cli(self) -> list[str]:
        """The words for the AWS CLI, as its options (--no-progress, ...)."""
        return [f"--{word}" for word in self.words if word not in OWN_WORDS]


def accepted_list() -> str:
    """The accepted flag words, for help and error messages."""
    return ", ".join(ACCEPTED)


def parse_flags(words: Iterable[str], command: str) -> Flags:
    """Turn flag words into Flags, refusing any that are not accepted."""
    chosen: list[str] = []
    for word in words:
        flag = word.strip().lower()
        if flag.startswith("-"):
            bare = flag.lstrip("-")
            raise FlagError(
                f"Write flag words without dashes: `datakit data {command} {bare}`, "
                f"not `{word}`. Accepted: {accepted_list()}."
            )
        if flag in VALUE_OPTIONS:
            raise FlagError(
                f'"{word}" takes a value, which datakit data {command} cannot pass through. '
                f"Accepted flag words: {accepted_list()}."
            )
        if flag not in ACCEPTED:
            close = difflib.get_close_matches(flag, ACCEPTED, n=1, cutoff=0.6)
            hint = f' Did you mean "{close[0]}"?' if close else ""
            raise FlagError(
                f'Unknown flag word "{word}" for datakit data {command}.{hint} '
                f"Accepted: {accepted_list()}."
            )
        if flag not in chosen:
            chosen.append(flag)
    for first, second in CONFLICTS:
        if first in chosen and second in chosen:
            raise FlagError(
                f'"{first}" and "{second}" contradict each other: pass one of them to '
                f"datakit data {command}, not both."
            )
    return Flags(tuple(chosen))

