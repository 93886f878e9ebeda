"""Compare-and-swap pushes: every upload names the version of the object it replaces.

A push decides what to upload against the ETags its listing saw. Another push
can land between that listing and the upload; the check after upload cannot see
it, since S3 then holds this push's bytes. S3's conditional writes close that
window: an upload carries ``If-Match: "<the ETag the plan saw>"``, or
``If-None-Match: *`` when the plan saw no object, and S3 refuses it (412) when the
object is no longer that version.

A store can accept those headers and ignore them (``rclone serve s3`` does), or
honour one kind and not another. So what a store does is learned per kind of
condition (``CREATE``: If-None-Match on a new file, ``REPLACE``: If-Match,
``DELETE``: the ETag of a batch delete), and only from an answer that only the
store could give: a *probe*. One small upload that the push meant to make anyway
is first sent under a deliberately wrong condition (If-Match with an ETag no object
has; If-None-Match: * on a key that exists). A store that enforces the condition
refuses it (412) and the upload is sent again under its right condition; a store
that ignores it does what was planned anyway. Either way nothing extra is written.
Conflicts that datakit finds itself (its check before a delete, the check after
upload) prove nothing about the store and teach nothing.

The uploads happen inside `aws s3 sync`, which has no such option: datakit's
plugin (engine/plugin.py), in the AWS CLI's own process (the bundled v1 or a v2),
adds the conditions through botocore's events and reports what became of each
upload and each probe as events, which datakit reads back (engine/cli.py). The
same hooks keep the bytes S3 stores whole: each part carries the MD5 of the bytes
read for it (S3 refuses a part that changed as it was sent), and a multipart
upload is completed only if the file still holds every part's bytes; otherwise it
is abandoned (the AWS CLI aborts it) and the file is "changed while the push ran".
This module is what datakit makes of it: the conditions a push asks for, what
each store has proven, and the protection each kind of change gets.
"""
import datetime
import json
import os
from typing import Mapping

# The kinds, what a probe shows, and what a delete is retried and probed with: the plugin's.
from .engine.plugin import (  # noqa: F401  (CONFLICT_ATTEMPTS, WRONG_ETAG, backoff: for s3.delete_remote)
    CONFLICT_ATTEMPTS, CREATE, DELETE, IGNORED, PROVEN, REPLACE, UNSUPPORTED, WRONG_ETAG, backoff,
)
from .files import write_json
from .layout import Layout, read_state_file
from .masking import mask_secrets
from .names import printable
from .settings import Settings

KINDS = (CREATE, REPLACE, DELETE)
#: What each kind covers, as the user's words say it.
COVERS = {CREATE: "new files", REPLACE: "changed files", DELETE: "deletions"}
#: The header each kind is sent as, and the probe that proves it.
HEADERS = {CREATE: "If-None-Match", REPLACE: "If-Match", DELETE: "the ETags of a batch delete"}
PROBES = {CREATE: "an upload sent with If-None-Match: * onto an object that exists",
          REPLACE: "an upload sent with a deliberately wrong If-Match",
          DELETE: "a delete sent with a deliberately wrong ETag"}


def kind_of(expected_etag: str | None) -> str:
    """The kind of condition an upload carries: CREATE where the plan saw no object."""
    return CREATE if expected_etag is None else REPLACE


class Guard:
    """The conditions of one `aws s3 sync` upload: the ETag the plan saw for each key
    (None: no object), and the kinds to probe."""

    def __init__(self, settings: Settings, expect: Mapping[str, str | None], probe: tuple[str, ...] = ()):
        self.expect = {settings.key_prefix + path: etag for path, etag in expect.items()}
        self.probe = [kind for kind in probe if kind in (CREATE, REPLACE)]

    def message(self) -> dict:
        """The plugin's ``guard`` (see plugin.install)."""
        return {"expect": self.expect, "probe": self.probe}


def endpoint_of(settings: Settings) -> str:
    """The store a memory entry is about: its endpoint (no credentials; the config's,
    else AWS_ENDPOINT_URL's, else AWS S3) and the bucket."""
    endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    return f"{mask_secrets(endpoint)} bucket {settings.bucket}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


class Memory:
    """What this project learned about each store's conditions, per kind, in
    ``.datakit-data/conditions.json``: {endpoint: {kind: {"state": PROVEN, IGNORED or
    UNSUPPORTED, "code": the answer, "since": when}}}. (Entries of an older datakit,
    which learned from its own checks, are not read: each kind is proven again.)"""

    #: More than any number of endpoints a project talks to.
    LIMIT = 64 * 1024

    def __init__(self, layout: Layout):
        self.path = layout.conditions
        try:
            data = json.loads(read_state_file(self.path, self.LIMIT) or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            data = {}  # damaged: learned again at the next push
        self.entries = {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _entry(self, settings: Settings, kind: str) -> dict:
        entry = self.entries.get(endpoint_of(settings), {}).get(kind)
        return entry if isinstance(entry, dict) else {}

    def get(self, settings: Settings, kind: str) -> str | None:
        state = self._entry(settings, kind).get("state")
        return state if state in (PROVEN, IGNORED, UNSUPPORTED) else None

    def supported(self, settings: Settings, kind: str) -> bool:
        return self.get(settings, kind) != UNSUPPORTED

    def learn(self, settings: Settings, kind: str, state: str, code: str = "") -> bool:
        """Remember what the store showed of a kind; True when that is news."""
        if self.get(settings, kind) == state:
            return False
        # The server's words: escaped, and short.
        entry = {"state": state, "code": printable(code)[:60], "since": _now()}
        self.entries.setdefault(endpoint_of(settings), {})[kind] = entry
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_json(self.path, self.entries)
        except OSError:
            pass  # learned again at the next push
        return True

    def since(self, settings: Settings, kind: str) -> str:
        """When the store last showed what is remembered of a kind, and its answer then."""
        entry = self._entry(settings, kind)
        code = printable(str(entry.get("code") or "an error"))[:60]
        return f"{code}, {printable(str(entry.get('since') or 'at a past push'))[:40]}"


def unsupported_notice(settings: Settings, code: str, kind: str) -> str:
    """Said once, when a store first rejects the conditions of a kind: what protection is left."""
    answer = (f"{endpoint_of(settings)} does not support conditional {'deletes' if kind == DELETE else 'writes'} "
              f"({HEADERS[kind]}; it answered {printable(code)[:60]})")
    if kind == DELETE:
        return f"{answer}: each object is checked just before it is deleted instead."
    return (
        f"{answer}: its {COVERS[kind]} are checked after upload only from now on, which cannot see a push "
        "that lands between a push's plan and its upload. Turn on versioning for the bucket so that nothing "
        "is lost for good. To try conditional writes again, delete .datakit-data/conditions.json."
    )


#: What each protection is called in status and in a push's words.
SWAP, AFTER, JUST_BEFORE = "compare-and-swap", "checked after upload only", "checked just before"
_UNSEEN = "a push that lands between another push's plan and its upload is not seen"


def protection(memory: Memory, settings: Settings, without_hooks: str = "") -> dict[str, dict[str, str]]:
    """Which protection each kind of change gets against a concurrent push, and why:
    {kind: {"mode": ..., "why": ...}}, for status and for a push's closing words.
    ``without_hooks``: why the AWS CLI that uploads runs without datakit's plugin
    ("" when it runs with it)."""
    found = {}
    for kind in KINDS:
        state, header, probe = memory.get(settings, kind), HEADERS[kind], PROBES[kind]
        if kind != DELETE and without_hooks:
            mode, why = AFTER, f"{without_hooks}, so it cannot carry conditional writes; {_UNSEEN}"
        elif state == PROVEN:
            mode, why = SWAP, f"proven: the server refused {probe} ({memory.since(settings, kind)})"
        elif state == IGNORED:
            mode = JUST_BEFORE if kind == DELETE else AFTER
            why = f"the server ignored {probe} ({memory.since(settings, kind)}): it does not enforce {header}"
            why += "; each object's ETag is read just before it is deleted" if kind == DELETE else f"; {_UNSEEN}"
        elif state == UNSUPPORTED:
            mode = JUST_BEFORE if kind == DELETE else AFTER
            why = f"the server refused {header} itself ({memory.since(settings, kind)})"
            why += "; each object's ETag is read just before it is deleted" if kind == DELETE else f"; {_UNSEEN}"
        elif kind == DELETE:
            mode, why = JUST_BEFORE, ("not yet proven on this server (the next `push delete` proves it); each "
                                      "object's ETag is read just before it is deleted")
        else:
            proof = "the next push that changes a file" if kind == REPLACE else "the first push that changes a file"
            mode, why = AFTER, (f"not yet proven on this server ({proof} of at most 1 MiB proves it); pushes send "
                                "the conditions meanwhile")
        found[kind] = {"mode": mode, "why": why}
    return found
