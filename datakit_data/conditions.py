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

The uploads happen inside `aws s3 sync`, which has no such option. The bundled AWS
CLI runs in our own launcher process (aws_cli._LAUNCHER), so ``install()`` adds
the conditions there through botocore's events, in the CLI's own process, and
writes what became of each upload and each probe to a report file, one JSON line
each; datakit reads it back (``Guard.read``). The same hooks keep the bytes S3
stores whole: each part carries the MD5 of the bytes read for it (S3 refuses a
part that changed as it was sent), and a multipart upload is completed only if
the file still holds every part's bytes; otherwise it is abandoned (the AWS CLI
aborts it) and the file is "changed while the push ran". This part runs in the
AWS CLI's Python and uses the standard library only.
"""
import base64
import datetime
import hashlib
import json
import os
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .files import write_json
from .layout import Layout, read_state_file
from .masking import mask_secrets
from .names import printable
from .settings import Settings

#: What became of a guarded request, as the launcher reports it.
SENT, REFUSED, UNSUPPORTED, CHANGED = "sent", "refused", "unsupported", "changed"
#: The kinds of condition, each learned on its own.
CREATE, REPLACE, DELETE = "create", "replace", "delete"
KINDS = (CREATE, REPLACE, DELETE)
#: What a probe (or a store's answer to the headers themselves) showed of a kind.
PROVEN, IGNORED = "proven", "ignored"
#: What each kind covers, as the user's words say it.
COVERS = {CREATE: "new files", REPLACE: "changed files", DELETE: "deletions"}
#: The header each kind is sent as, and the probe that proves it.
HEADERS = {CREATE: "If-None-Match", REPLACE: "If-Match", DELETE: "the ETags of a batch delete"}
PROBES = {CREATE: "an upload sent with If-None-Match: * onto an object that exists",
          REPLACE: "an upload sent with a deliberately wrong If-Match",
          DELETE: "a delete sent with a deliberately wrong ETag"}
#: The ETag a probe names: well formed, and no object's (its bytes would have an MD5 of 0).
WRONG_ETAG = "0" * 32
#: The Content-MD5 a create probe carries: no bytes have it.
WRONG_MD5 = base64.b64encode(bytes(16)).decode("ascii")
#: A probe rides only on an upload this small: a store may answer 412 only after the
#: whole body has arrived, so a probe costs at most this many bytes more.
PROBE_MAX_BYTES = 1024 * 1024
#: Attempts of a write or delete that S3 answers 409 ConditionalRequestConflict
#: (another conditional write to the key was in flight), before it counts as refused.
CONFLICT_ATTEMPTS = 4
#: The S3 error code a multipart upload abandoned by us is reported under.
CHANGED_CODE = "ChangedWhileSent"
#: What S3 answers a part or an upload whose bytes are not those of its Content-MD5.
_DIGEST_CODES = ("BadDigest", "InvalidDigest")


def backoff(attempt: int) -> float:
    """Seconds to wait before trying a 409 again: doubling, with jitter."""
    return random.uniform(0.05, 0.2) * 2 ** attempt
#: A 400 that names the conditional headers themselves (not "the ETag of a part").
_HEADER_WORDS = re.compile(r"if-match|if-none-match|ifmatch|ifnonematch|conditional (?:write|request|header)s?",
                           re.IGNORECASE)
# The first error of the line is the AWS CLI's own; the server's message comes after it.
_FAILED_UPLOAD = re.compile(
    r"^upload failed: data/(?P<path>.+?) to s3://.*? An error occurred \((?P<code>[^)]+)\) when calling the "
    r"(?:PutObject|CompleteMultipartUpload|UploadPart|CreateMultipartUpload) operation")


def verdict(status: int, code: str, message: str, matching: bool) -> str | None:
    """What a response to a guarded write means: SENT, REFUSED, UNSUPPORTED, or None
    (another failure, which the AWS CLI reports itself).

    ``matching`` is True for If-Match (the plan saw an object), False for
    If-None-Match. AWS answers 404 NoSuchKey to If-Match on a key deleted meanwhile.
    A store without conditional writes answers 501 or NotImplemented, or 400 naming
    the header.
    """
    if 200 <= status < 300:
        return SENT
    if status == 412 or code == "PreconditionFailed":
        return REFUSED
    if status == 409 and code == "ConditionalRequestConflict":
        return REFUSED  # still racing after CONFLICT_ATTEMPTS
    if matching and status == 404 and code == "NoSuchKey":
        return REFUSED
    if status == 501 or code == "NotImplemented":
        return UNSUPPORTED
    if status == 400 and _HEADER_WORDS.search(f"{code} {message}"):
        return UNSUPPORTED
    return None


def probe_verdict(status: int, code: str, message: str, kind: str) -> str | None:
    """What the answer to an upload sent under a deliberately wrong condition of this
    kind shows: PROVEN (refused: the store enforces it), IGNORED (done anyway),
    UNSUPPORTED (the header itself rejected), or None (nothing: a 409 race, a
    network or server error)."""
    if 200 <= status < 300:
        return IGNORED
    if status == 412 or code == "PreconditionFailed":
        return PROVEN
    if kind == REPLACE and status == 404 and code == "NoSuchKey":
        return PROVEN  # AWS: If-Match on a key deleted meanwhile; an ignoring store writes it
    answer = verdict(status, code, message, kind == REPLACE)
    return UNSUPPORTED if answer == UNSUPPORTED else None


def kind_of(expected_etag: str | None) -> str:
    """The kind of condition an upload carries: CREATE where the plan saw no object."""
    return CREATE if expected_etag is None else REPLACE


def refusal_line(line: str) -> tuple[str, str] | None:
    """(path in data/, S3 error code) of an `upload failed:` line of the AWS CLI, else None."""
    match = _FAILED_UPLOAD.match(line)
    return (match.group("path"), match.group("code")) if match else None


# in the AWS CLI's process (the standard library only) ---------------------------

def _digest(body: Any) -> tuple[bytes, int] | None:
    """(MD5, size) of a request body read from where it stands, which is put back
    there; None for a body that cannot be read twice."""
    if isinstance(body, (bytes, bytearray)):
        return hashlib.md5(body, usedforsecurity=False).digest(), len(body)
    if not all(hasattr(body, name) for name in ("read", "seek", "tell")):
        return None
    start = body.tell()
    digest, size = hashlib.md5(usedforsecurity=False), 0
    try:
        while block := body.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    finally:
        body.seek(start)
    return digest.digest(), size


def _holds(path: str, parts: list[tuple[bytes, int]]) -> bool:
    """Does the file at path hold exactly these parts ((MD5, size), in order), and nothing more?"""
    try:
        with open(path, "rb") as fh:
            for md5, size in parts:
                digest, left = hashlib.md5(usedforsecurity=False), size
                while left and (block := fh.read(min(left, 1024 * 1024))):
                    digest.update(block)
                    left -= len(block)
                if left or digest.digest() != md5:
                    return False
            return not fh.read(1)
    except OSError:
        return False


class _Answer:
    """The HTTP side of an answer given in the AWS CLI's process, without asking S3."""

    headers: dict = {}
    content = b""
    raw = None

    def __init__(self, status_code: int):
        self.status_code = status_code


def install(session: Any, guard: Mapping[str, Any]) -> None:
    """Add the conditions of ``guard`` (see Guard.message) to the uploads the AWS CLI's
    botocore session makes, with the probes it asks for, keep the bytes S3 stores
    whole, and report what became of each upload and each probe."""
    bucket, prefix = guard["bucket"], guard["prefix"]
    expect = guard["expect"]
    pending = list(guard.get("probe") or ())  # kinds still to probe, one upload each
    report = open(guard["report"], "a", encoding="utf-8", buffering=1)
    lock = threading.Lock()
    parts: dict[str, dict[int, tuple[bytes, int]]] = {}  # UploadId: {PartNumber: (MD5, size)}

    def tell(**entry: Any) -> None:
        with lock:
            report.write(json.dumps(entry) + "\n")

    def ours(params: dict) -> str | None:
        key = params.get("Key")
        return key if params.get("Bucket") == bucket and isinstance(key, str) and key.startswith(prefix) else None

    def condition(params: dict, context: dict, **_: Any) -> None:
        key = ours(params)
        if key is None:
            return
        context["datakit_key"] = key
        if key not in expect:
            return
        etag = expect[key]
        params.pop("IfMatch", None)
        params.pop("IfNoneMatch", None)
        if etag is None:
            params["IfNoneMatch"] = "*"
        else:
            params["IfMatch"] = f'"{etag}"'
        context["datakit_guarded"] = key

    def whole(params: dict, context: dict, **_: Any) -> None:
        """A single upload or a part carries the MD5 of the bytes read for it."""
        key = ours(params)
        if key is None or params.get("ContentMD5"):
            return
        found = _digest(params.get("Body"))
        if found is None:
            return
        md5, size = found
        params["ContentMD5"] = base64.b64encode(md5).decode("ascii")
        context["datakit_key"] = key
        if "PartNumber" in params:
            with lock:
                parts.setdefault(str(params.get("UploadId")), {})[int(params["PartNumber"])] = (md5, size)
        elif size <= PROBE_MAX_BYTES and expect.get(key, None) is not None:
            # An upload that replaces an object can carry the probes (If-None-Match: *
            # is wrong for it, as is an ETag no object has).
            with lock:
                taken = [kind for kind in (CREATE, REPLACE) if kind in pending]
                for kind in taken:
                    pending.remove(kind)
            if taken:
                context["datakit_probes"] = taken

    def probe(request: Any, **_: Any) -> None:
        """Each attempt of an upload with probes left is sent under the next one."""
        context = getattr(request, "context", {})
        probes = context.get("datakit_probes")
        if not probes:
            return
        for name in ("If-Match", "If-None-Match", "Content-MD5"):
            if name in request.headers:
                del request.headers[name]
        if probes[0] == CREATE:
            request.headers["If-None-Match"] = "*"
            # The key may have been deleted since the plan: a store honouring the condition
            # would then take the upload, where its right condition (If-Match) would have
            # refused it. A wrong Content-MD5 makes any store that checks it refuse the bytes.
            request.headers["Content-MD5"] = WRONG_MD5
        else:
            request.headers["If-Match"] = f'"{WRONG_ETAG}"'

    def complete(params: dict, context: dict, **_: Any) -> None:
        """Complete a multipart upload only if the file still holds every part sent."""
        key = ours(params)
        if key is None:
            return
        context["datakit_key"] = key
        with lock:
            sent = parts.pop(str(params.get("UploadId")), None)
        listed = (params.get("MultipartUpload") or {}).get("Parts") or []
        numbers = sorted(int(part.get("PartNumber", 0)) for part in listed)
        if sent is None or sorted(sent) != numbers:
            return  # not parts this process sent: nothing to compare
        path = os.path.join("data", *key[len(prefix):].split("/"))
        if not _holds(path, [sent[n] for n in numbers]):
            context["datakit_changed"] = key
            tell(key=key, result=CHANGED, code=CHANGED_CODE)

    def abandon(context: dict, **_: Any) -> tuple | None:
        if "datakit_changed" not in context:
            return None
        return _Answer(400), {"Error": {"Code": CHANGED_CODE, "Message": "the file changed while it was sent; "
                                        "the upload is abandoned"}, "ResponseMetadata": {"HTTPStatusCode": 400}}

    def outcome(http_response: Any, parsed: dict, model: Any, context: dict, **_: Any) -> None:
        key = context.get("datakit_key")
        if key is None or "datakit_changed" in context:
            return
        status = http_response.status_code
        error = parsed.get("Error") or {}
        code, message = str(error.get("Code") or ""), str(error.get("Message") or "")
        if 200 <= status < 300:
            if model.name != "UploadPart":
                tell(key=key, result=SENT, code=str(status), etag=str(parsed.get("ETag") or "").strip('"'))
            return
        if code in _DIGEST_CODES:
            tell(key=key, result=CHANGED, code=code)
            return
        if "datakit_guarded" not in context:
            return
        result = verdict(status, code, message, expect[key] is not None)
        if result is not None:
            tell(key=key, result=result, code=code or str(status))

    def retry(response: Any, attempts: int, request_dict: dict, **_: Any) -> float | None:
        context = request_dict.get("context", {})
        if response is None or "datakit_key" not in context:
            return None
        http_response, parsed = response
        error = parsed.get("Error") or {}
        code, message = str(error.get("Code") or ""), str(error.get("Message") or "")
        probes = context.get("datakit_probes")
        if probes:
            found = probe_verdict(http_response.status_code, code, message, probes[0])
            if found is None and code in _DIGEST_CODES:
                probes.pop(0)  # refused for its Content-MD5 alone: nothing shown, nothing written
                return 0
            if found is not None:
                tell(probe=probes.pop(0), result=found, key=context["datakit_key"], code=code or str(http_response.status_code))
                if found == IGNORED:
                    probes.clear()  # the upload is done: it was what the push planned
                    return None
                return 0  # at once, under the next probe or the right condition
        if "datakit_guarded" in context and http_response.status_code == 409 \
                and code == "ConditionalRequestConflict" and attempts < CONFLICT_ATTEMPTS:
            return backoff(attempts)
        return None

    for operation in ("PutObject", "UploadPart"):
        session.register(f"before-parameter-build.s3.{operation}", whole)
    for operation in ("PutObject", "CompleteMultipartUpload"):
        session.register(f"before-parameter-build.s3.{operation}", condition)
        session.register(f"needs-retry.s3.{operation}", retry)
    session.register("before-sign.s3.PutObject", probe)
    session.register("before-parameter-build.s3.CompleteMultipartUpload", complete)
    session.register("before-call.s3.CompleteMultipartUpload", abandon)
    for operation in ("PutObject", "UploadPart", "CompleteMultipartUpload"):
        session.register(f"after-call.s3.{operation}", outcome)


# in datakit -------------------------------------------------------------------

@dataclass
class Answers:
    """What the report file says became of the uploads and the probes."""

    sent: dict = field(default_factory=dict)  # {path: the ETag S3 answered}
    refused: dict = field(default_factory=dict)  # {path: S3 error code}
    unsupported: dict = field(default_factory=dict)  # {path: S3 error code}
    changed: dict = field(default_factory=dict)  # {path: code}: the file changed while it was sent
    probes: dict = field(default_factory=dict)  # {kind: (PROVEN, IGNORED or UNSUPPORTED, the code)}

    def explains(self, path: str, code: str) -> bool:
        """Is this failed upload (its path and S3 error code) one the launcher reported?"""
        return code in (self.refused.get(path), self.unsupported.get(path), self.changed.get(path))

    def merge(self, again: "Answers", paths: Iterable[str]) -> None:
        """Take what became of these paths, sent again without conditions, from ``again``."""
        for path in paths:
            self.unsupported.pop(path, None)
            for mine, theirs in ((self.sent, again.sent), (self.changed, again.changed)):
                if path in theirs:
                    mine[path] = theirs[path]


class Guard:
    """The conditions of one `aws s3 sync` upload: the ETag the plan saw for each key
    (None: no object), the kinds to probe, and where the launcher reports what became
    of each upload."""

    def __init__(self, settings: Settings, expect: Mapping[str, str | None], report: str,
                 probe: tuple[str, ...] = ()):
        self.bucket = settings.bucket
        self.prefix = settings.key_prefix
        self.expect = {self.prefix + path: etag for path, etag in expect.items()}
        self.report = report
        self.probe = [kind for kind in probe if kind in (CREATE, REPLACE)]

    def message(self) -> dict:
        """What the launcher needs, sent with the arguments (see aws_cli.Cli.run)."""
        return {"bucket": self.bucket, "prefix": self.prefix, "expect": self.expect, "probe": self.probe,
                "report": self.report}

    def read(self) -> Answers:
        """The outcomes reported so far; a line cut short by a kill is left out."""
        found = Answers()
        try:
            with open(self.report, encoding="utf-8", errors="replace") as fh:
                lines = fh.readlines()
        except FileNotFoundError:
            return found
        for line in lines:
            try:
                entry = json.loads(line)
                key, result, code = entry["key"], entry["result"], str(entry["code"])
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(key, str) or not key.startswith(self.prefix):
                continue
            path = key[len(self.prefix):]
            kind = entry.get("probe")
            if kind in self.probe and result in (PROVEN, IGNORED, UNSUPPORTED):
                found.probes.setdefault(kind, (result, code))
            elif kind is not None:
                continue
            elif result == SENT:
                found.sent[path] = str(entry.get("etag") or "")
            elif result == CHANGED:
                found.changed[path] = code
            elif key not in self.expect:
                continue
            elif result == REFUSED:
                found.refused[path] = code
            elif result == UNSUPPORTED:
                found.unsupported[path] = code
        return found


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


def protection(memory: Memory, settings: Settings, hooks: bool) -> dict[str, dict[str, str]]:
    """Which protection each kind of change gets against a concurrent push, and why:
    {kind: {"mode": ..., "why": ...}}, for status and for a push's closing words."""
    found = {}
    for kind in KINDS:
        state, header, probe = memory.get(settings, kind), HEADERS[kind], PROBES[kind]
        if kind != DELETE and not hooks:
            mode, why = AFTER, f"DATAKIT_DATA_AWS runs another AWS CLI, which cannot carry conditional writes; {_UNSEEN}"
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
