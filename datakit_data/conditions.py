"""Compare-and-swap pushes: every upload names the version of the object it replaces.

A push decides what to upload against the ETags its listing saw. Another push
can land between that listing and the upload; the check after upload cannot see
it, since S3 then holds this push's bytes. S3's conditional writes close that
window: an upload carries ``If-Match: "<the ETag the plan saw>"``, or
``If-None-Match: *`` when the plan saw no object, and S3 refuses it (412) when the
object is no longer that version. AWS S3, MinIO, Cloudflare R2, Ceph RGW and
SeaweedFS honour them on PutObject and CompleteMultipartUpload.

The uploads happen inside `aws s3 sync`, which has no such option. The bundled AWS
CLI runs in our own launcher process (aws_cli._LAUNCHER), so ``install()`` adds the
conditions there through botocore's events, in the CLI's own process, and writes
what became of each guarded key to a report file: one JSON line per key. Datakit
reads the report back (``Guard.read``): a refused key is a conflict, and a store
that rejects the headers themselves is remembered per endpoint (``Memory``) so that
pushes there go on without them, checked after upload only.
"""
import datetime
import json
import os
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from .files import write_json
from .layout import Layout, read_state_file
from .masking import mask_secrets
from .names import printable
from .settings import Settings

#: What became of a guarded request, as the launcher reports it.
SENT, REFUSED, UNSUPPORTED = "sent", "refused", "unsupported"
#: Attempts of a write or delete that S3 answers 409 ConditionalRequestConflict
#: (another conditional write to the key was in flight), before it counts as refused.
CONFLICT_ATTEMPTS = 4


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


def refusal_line(line: str) -> tuple[str, str] | None:
    """(path in data/, S3 error code) of an `upload failed:` line of the AWS CLI, else None."""
    match = _FAILED_UPLOAD.match(line)
    return (match.group("path"), match.group("code")) if match else None


# in the AWS CLI's process --------------------------------------------------------

def install(session: Any, guard: Mapping[str, Any]) -> None:
    """Add the conditions of ``guard`` (see Guard.message) to the uploads the AWS CLI's
    botocore session makes, and report each guarded key's outcome."""
    bucket = guard["bucket"]
    expect = guard["expect"]
    report = open(guard["report"], "a", encoding="utf-8", buffering=1)
    lock = threading.Lock()

    def condition(params: dict, context: dict, **_: Any) -> None:
        key = params.get("Key")
        if params.get("Bucket") != bucket or key not in expect:
            return
        etag = expect[key]
        params.pop("IfMatch", None)
        params.pop("IfNoneMatch", None)
        if etag is None:
            params["IfNoneMatch"] = "*"
        else:
            params["IfMatch"] = f'"{etag}"'
        context["datakit_guarded"] = key

    def outcome(http_response: Any, parsed: dict, context: dict, **_: Any) -> None:
        key = context.get("datakit_guarded")
        if key is None:
            return
        error = parsed.get("Error") or {}
        code, message = str(error.get("Code") or ""), str(error.get("Message") or "")
        result = verdict(http_response.status_code, code, message, expect[key] is not None)
        if result is None:
            return
        line = json.dumps({"key": key, "result": result, "code": code or str(http_response.status_code)})
        with lock:
            report.write(line + "\n")

    def retry(response: Any, attempts: int, request_dict: dict, **_: Any) -> float | None:
        if response is None or "datakit_guarded" not in request_dict.get("context", {}):
            return None
        http_response, parsed = response
        code = (parsed.get("Error") or {}).get("Code")
        if http_response.status_code == 409 and code == "ConditionalRequestConflict" and attempts < CONFLICT_ATTEMPTS:
            return backoff(attempts)
        return None

    for operation in ("PutObject", "CompleteMultipartUpload"):
        session.register(f"before-parameter-build.s3.{operation}", condition)
        session.register(f"after-call.s3.{operation}", outcome)
        session.register(f"needs-retry.s3.{operation}", retry)


# in datakit -------------------------------------------------------------------

@dataclass
class Answers:
    """What the report file says became of the guarded keys: {path: S3 error code}."""

    sent: set = field(default_factory=set)
    refused: dict = field(default_factory=dict)
    unsupported: dict = field(default_factory=dict)

    def explains(self, path: str, code: str) -> bool:
        """Is this failed upload (its path and S3 error code) one the launcher reported?"""
        return self.refused.get(path) == code or self.unsupported.get(path) == code


class Guard:
    """The conditions of one `aws s3 sync` upload: the ETag the plan saw for each key
    (None: no object), and where the launcher reports what became of each."""

    def __init__(self, settings: Settings, expect: Mapping[str, str | None], report: str):
        self.bucket = settings.bucket
        self.prefix = settings.key_prefix
        self.expect = {self.prefix + path: etag for path, etag in expect.items()}
        self.report = report

    def message(self) -> dict:
        """What the launcher needs, sent with the arguments (see aws_cli.Cli.run)."""
        return {"bucket": self.bucket, "expect": self.expect, "report": self.report}

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
            if not isinstance(key, str) or key not in self.expect:
                continue
            path = key[len(self.prefix):]
            if result == SENT:
                found.sent.add(path)
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


class Memory:
    """What this project learned about each endpoint's conditional writes, in
    ``.datakit-data/conditions.json``: {endpoint: {"writes": ..., "deletes": ...,
    "code": ..., "since": ...}}, each of "writes" and "deletes" "enforced" (a
    condition was refused once), "accepted" or "unsupported"."""

    #: More than any number of endpoints a project talks to.
    LIMIT = 64 * 1024

    def __init__(self, layout: Layout):
        self.path = layout.conditions
        try:
            data = json.loads(read_state_file(self.path, self.LIMIT) or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            data = {}  # damaged: learned again at the next push
        self.entries = {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def get(self, settings: Settings, what: str = "writes") -> str | None:
        value = self.entries.get(endpoint_of(settings), {}).get(what)
        return value if value in ("enforced", "accepted", "unsupported") else None

    def supported(self, settings: Settings, what: str = "writes") -> bool:
        return self.get(settings, what) != "unsupported"

    def learn(self, settings: Settings, what: str, found: str, code: str = "") -> bool:
        """Remember what the store did; True when that is news (the first time seen)."""
        before = self.get(settings, what)
        if before == found or (before == "enforced" and found == "accepted"):
            return False
        entry = self.entries.setdefault(endpoint_of(settings), {})
        entry[what] = found
        if found == "unsupported":
            entry["code"] = printable(code)[:60]  # the server's words: escaped, and short
            entry["since"] = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_json(self.path, self.entries)
        except OSError:
            pass  # learned again at the next push
        return found == "unsupported"

    def describe(self, settings: Settings) -> str:
        """The line after "refused conditional writes": its code and when."""
        entry = self.entries.get(endpoint_of(settings), {})
        code = printable(str(entry.get("code") or "an error"))[:60]
        since = printable(str(entry.get("since") or "a past push"))[:40]
        return f"{code} since {since}"


def unsupported_notice(settings: Settings, code: str, what: str) -> str:
    """Said once, when a store first rejects the conditions of ``what`` ("writes" or
    "deletes"): what protection is left."""
    answer = f"{endpoint_of(settings)} does not support conditional {what} (it answered {printable(code)[:60]})"
    if what == "deletes":
        return f"{answer}: each object is checked just before it is deleted instead."
    return (
        f"{answer}: this push and later ones there are checked after upload only, which cannot see a push "
        "that lands between a push's plan and its upload. Turn on versioning for the bucket so that nothing "
        "is lost for good. To try conditional writes again, delete .datakit-data/conditions.json."
    )


def protection(memory: Memory, settings: Settings, hooks: bool) -> dict:
    """Which protection pushes get against a concurrent push, for status."""
    if not hooks:
        return {"mode": "checked after upload only",
                "why": "DATAKIT_DATA_AWS runs another AWS CLI, which cannot carry conditional writes; "
                       "a push that lands between this push's plan and its upload is not seen"}
    state = memory.get(settings)
    if state != "unsupported" and memory.get(settings, "deletes") == "enforced":
        state = "enforced"  # a refused conditional delete shows it too
    if state == "unsupported":
        return {"mode": "checked after upload only",
                "why": f"the server refused conditional writes ({memory.describe(settings)}); "
                       "a push that lands between this push's plan and its upload is not seen"}
    if state == "enforced":
        return {"mode": "compare-and-swap", "why": "the server enforces conditional writes"}
    if state == "accepted":
        return {"mode": "compare-and-swap",
                "why": "pushes send conditional writes, which the server accepts; it has not yet been seen "
                       "refusing one (a server that ignored them would not be caught in the window between "
                       "plan and upload)"}
    return {"mode": "compare-and-swap",
            "why": "pushes send conditional writes (not yet tried on this server)"}
