"""datakit-data's AWS CLI plugin: every hook datakit adds to an AWS CLI, v1 or v2.

An AWS CLI runs `aws s3 sync` for datakit; this module, loaded into that CLI's own
process, adds through botocore's events what `aws s3 sync` has no option for:

- **conditions**: each upload names the version of the object it replaces
  (``If-Match``) or that there is none (``If-None-Match: *``), with the probes that
  prove a store enforces them (see datakit_data/conditions.py);
- **whole bytes**: each single upload and each part carries the MD5 of the bytes
  read for it, and a multipart upload is completed only if the file still holds
  every part;
- **listing answers**: the sync's own listing answered with what datakit planned;
- **settings for this command only**: S3 concurrency, the classic transfer client
  (the CRT client bypasses botocore, and so these hooks), quiet logs;
- **events**: one JSON line per thing that happened, in order, to one file that
  datakit reads (``EVENTS``).

The bundled AWS CLI v1 runs in datakit's launcher (launcher.py), which calls
``install``. AWS CLI v2 imports this file as a plugin (``[plugins]`` in a copy of
the user's AWS config, see awsconfig.plugin_config) and calls
``awscli_initialize``, which reads its setup from the file named by
``DATAKIT_DATA_PLUGIN``. So this file uses the standard library only, and
nothing of datakit: it must import in any AWS CLI's Python.
"""
import base64
import datetime
import hashlib
import json
import logging
import os
import random
import re
import sys
import threading
import zlib

#: The environment variable naming the setup file (JSON) of one AWS CLI run.
SETUP_ENV = "DATAKIT_DATA_PLUGIN"
#: Bumped when the setup or the events change shape.
VERSION = 2
#: The `aws s3 sync` option that only an AWS CLI with this plugin takes (see _interlock).
INTERLOCK = "datakit-data-run"

# Events, one JSON object per line, each with "event" set to one of these:
LOADED = "loaded"  # the plugin is in this CLI: {"cli": its version, "plugin": VERSION}
NOTE = "note"  # something datakit shows with --debug: {"text": ...}
STARTED = "started"  # an upload or download began: {"key", "op": "upload"|"download"}
BYTES = "bytes"  # bytes of a file moved (a part sent; a download's chunks read): {"key", "bytes", "part"}
DONE = "done"  # S3 took an upload: {"key", "etag", "version_id", "checksums", "bytes"}
RECEIVED = "received"  # S3 answered a download: {"key", "etag", "version_id", "bytes"}
REFUSED = "refused"  # S3 refused an upload under its condition: {"key", "code", "condition"}
UNSUPPORTED = "unsupported"  # S3 rejected the condition itself: {"key", "code"}
CHANGED = "changed"  # the file changed while it was sent: {"key", "code"}
FAILED = "failed"  # any other failure of a request of ours: {"key", "code", "status"}
PROBE = "probe"  # what a probe showed: {"probe": kind, "result", "key", "code"}
MULTIPART = "multipart"  # a multipart upload began on S3 (kept there if the run stops): {"key", "upload_id"}

#: The kinds of condition, each learned on its own.
CREATE, REPLACE, DELETE = "create", "replace", "delete"
#: What a probe showed of a kind.
PROVEN, IGNORED = "proven", "ignored"
#: The ETag a probe names: well formed, and no object's (its bytes would have an MD5 of 0).
WRONG_ETAG = "0" * 32
#: The Content-MD5 a create probe carries: no bytes have it.
WRONG_MD5 = base64.b64encode(bytes(16)).decode("ascii")
#: A probe rides only on an upload this small: a store may answer 412 only after the
#: whole body has arrived, so a probe costs at most this many bytes more.
PROBE_MAX_BYTES = 1024 * 1024
#: Attempts of a write that S3 answers 409 ConditionalRequestConflict (another
#: conditional write to the key was in flight), before it counts as refused.
CONFLICT_ATTEMPTS = 4
#: The S3 error code a multipart upload abandoned by us is reported under.
CHANGED_CODE = "ChangedWhileSent"
#: What S3 answers a part or an upload whose bytes are not those of its Content-MD5.
DIGEST_CODES = ("BadDigest", "InvalidDigest")
#: A 400 that names the conditional headers themselves (not "the ETag of a part").
_HEADER_WORDS = re.compile(r"if-match|if-none-match|ifmatch|ifnonematch|conditional (?:write|request|header)s?",
                           re.IGNORECASE)


def backoff(attempt):
    """Seconds to wait before trying a 409 again: doubling, with jitter."""
    return random.uniform(0.05, 0.2) * 2 ** attempt


def verdict(status, code, message, matching):
    """What a response to a guarded write means: DONE, REFUSED, UNSUPPORTED, or None
    (another failure, which the AWS CLI reports itself).

    ``matching`` is True for If-Match (the plan saw an object), False for
    If-None-Match. AWS answers 404 NoSuchKey to If-Match on a key deleted meanwhile.
    A store without conditional writes answers 501 or NotImplemented, or 400 naming
    the header.
    """
    if 200 <= status < 300:
        return DONE
    if status == 412 or code == "PreconditionFailed":
        return REFUSED
    if status == 409 and code == "ConditionalRequestConflict":
        return REFUSED  # still racing after CONFLICT_ATTEMPTS
    if matching and status == 404 and code == "NoSuchKey":
        return REFUSED
    if status == 501 or code == "NotImplemented":
        return UNSUPPORTED
    if status == 400 and _HEADER_WORDS.search("%s %s" % (code, message)):
        return UNSUPPORTED
    return None


def probe_verdict(status, code, message, kind):
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


def _md5(data=b""):
    """An MD5 object (for S3's Content-MD5, not for security): Pythons before 3.9 take
    no usedforsecurity."""
    try:
        return hashlib.md5(data, usedforsecurity=False)
    except TypeError:
        return hashlib.md5(data)


def digest(body):
    """(MD5, size) of a request body read from where it stands, which is put back
    there; None for a body that cannot be read twice."""
    if isinstance(body, (bytes, bytearray)):
        return _md5(body).digest(), len(body)
    if not all(hasattr(body, name) for name in ("read", "seek", "tell")):
        return None
    start = body.tell()
    found, size = _md5(), 0
    try:
        while True:
            block = body.read(1024 * 1024)
            if not block:
                break
            found.update(block)
            size += len(block)
    finally:
        body.seek(start)
    return found.digest(), size


def checksum(body, algorithm):
    """The base64 checksum S3 gives a part of these bytes (a body read from where it
    stands, which is put back there): crc32, sha1 or sha256; None for another."""
    if algorithm not in ("crc32", "sha1", "sha256"):
        return None
    found = 0 if algorithm == "crc32" else hashlib.new(algorithm)
    if isinstance(body, (bytes, bytearray)):
        blocks, start = [bytes(body)], None
    elif all(hasattr(body, name) for name in ("read", "seek", "tell")):
        start = body.tell()
        blocks = iter(lambda: body.read(1024 * 1024), b"")
    else:
        return None
    try:
        for block in blocks:
            if algorithm == "crc32":
                found = zlib.crc32(block, found)
            else:
                found.update(block)
    finally:
        if start is not None:
            body.seek(start)
    raw = found.to_bytes(4, "big") if algorithm == "crc32" else found.digest()
    return base64.b64encode(raw).decode("ascii")


def holds(path, parts):
    """Does the file at path hold exactly these parts ((MD5, size), in order), and nothing more?"""
    try:
        with open(path, "rb") as fh:
            for md5, size in parts:
                found, left = _md5(), size
                while left:
                    block = fh.read(min(left, 1024 * 1024))
                    if not block:
                        break
                    found.update(block)
                    left -= len(block)
                if left or found.digest() != md5:
                    return False
            return not fh.read(1)
    except OSError:
        return False


class Answer:
    """The HTTP side of an answer given in the AWS CLI's process, without asking S3."""

    headers = {}
    content = b""
    raw = None

    def __init__(self, status_code):
        self.status_code = status_code


class _Counted:
    """A download's body that says, as it is read, how many bytes came (at most one
    event per MiB, and one at its end)."""

    STEP = 1024 * 1024

    def __init__(self, body, events, key):
        self._body, self._events, self._key, self._pending = body, events, key, 0

    def read(self, *args, **kwargs):
        data = self._body.read(*args, **kwargs)
        self._pending += len(data)
        if self._pending and (not data or self._pending >= self.STEP):
            self._events.tell(BYTES, key=self._key, bytes=self._pending)
            self._pending = 0
        return data

    def __getattr__(self, name):
        return getattr(self._body, name)


class Events:
    """The events file: one JSON line per event, written whole (line-buffered, under a lock)."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8", buffering=1)

    def tell(self, event, **fields):
        fields["event"] = event
        line = json.dumps(fields) + "\n"
        with self.lock:
            self.file.write(line)


def cli_version():
    """The version of the AWS CLI this runs in, as it says it."""
    try:
        import awscli

        return "aws-cli/%s" % awscli.__version__
    except Exception:  # noqa: BLE001  not the AWS CLI: nothing to name
        return "unknown"


# The parts of a run's setup, each registered on the CLI's event emitter ---------

def _settings(events, emitter, setup):
    """S3 concurrency, the classic transfer client and quiet logs, for this command
    only: set in the config as the CLI has read it, once the profile is known. The
    user's files are never touched."""
    concurrency = setup.get("concurrency")  # [value, whether it overrides the user's AWS config]
    quiet = bool(setup.get("quiet"))

    def initialized(session, **_):
        if quiet:
            # Without --debug the AWS CLI sets its logger to DEBUG and that logger's one
            # handler to ERROR: every debug message became a record only to be thrown
            # away. The logger itself at its handler's level shows the same, and makes none.
            logger = logging.getLogger("awscli")
            levels = [handler.level for handler in logger.handlers]
            if levels:
                logger.setLevel(min(levels))
        try:
            profiles = session.full_config["profiles"]
            name = session.get_config_variable("profile") or "default"
            if name not in profiles and name != "default":
                return  # a missing profile: the command says so itself
            s3 = profiles.setdefault(name, {}).setdefault("s3", {})
        except Exception:  # noqa: BLE001  a config it cannot read: the command says so itself
            return
        if not isinstance(s3, dict):
            return
        if concurrency and (concurrency[1] or "max_concurrent_requests" not in s3):
            s3["max_concurrent_requests"] = str(concurrency[0])
            events.tell(NOTE, text="max_concurrent_requests = %d for this command" % int(concurrency[0]))
        classic = _classic_transfer_client()
        if classic is not None:
            asked = s3.get("preferred_transfer_client")
            if asked not in (None, classic):
                events.tell(NOTE, text="preferred_transfer_client = %s in the AWS config: this command runs the "
                            "classic transfer client (%s), which carries datakit's checks" % (str(asked)[:40], classic))
            s3["preferred_transfer_client"] = classic

    return initialized


def _interlock(emitter):
    """``--datakit-data-run`` for `aws s3 sync`: an option only this plugin knows, which
    datakit passes where it counts on the plugin. An AWS CLI without the plugin refuses
    it ("Unknown options") before it transfers anything."""
    def add(arg_table, **_):
        if isinstance(arg_table, list) and not any(arg.get("name") == INTERLOCK for arg in arg_table):
            arg_table.append({"name": INTERLOCK, "action": "store_true",
                              "help_text": "Run with datakit-data's plugin (datakit passes it)."})

    for name in ("sync", "s3_sync"):  # (v1 names an argument table by its command, v2 by its lineage)
        emitter.register("building-arg-table.%s" % name, add)


def _watch_stdin():
    """End the CLI at once when datakit closes our stdin, or dies."""
    sys.stdin.read()
    os._exit(137)


def _classic_transfer_client():
    """The value of ``preferred_transfer_client`` that picks the transfer client built
    on botocore: "classic" in newer AWS CLI v2 releases, "default" in older ones (where
    "default" meant it); None in an AWS CLI without the setting (v1)."""
    try:
        from awscli.customizations.s3 import constants
    except Exception:  # noqa: BLE001
        return None
    classic = getattr(constants, "CLASSIC_TRANSFER_CLIENT", None)
    if classic:
        return classic
    default = getattr(constants, "DEFAULT_TRANSFER_CLIENT", None)
    return default if default and getattr(constants, "CRT_TRANSFER_CLIENT", None) else None


def _listing(emitter, setup):
    """Answer the sync's own ListObjectsV2 requests with the objects datakit planned
    (one page), instead of asking S3 (see datakit_data/engine/cli.py)."""
    contents = setup["listing"]

    def answer(**_):
        # The sync lists only the folder datakit planned. A copy each time: the CLI changes the entries it is given.
        page = [dict(entry) for entry in contents]
        return Answer(200), {"Contents": page, "KeyCount": len(page), "IsTruncated": False,
                             "ResponseMetadata": {"HTTPStatusCode": 200}}

    emitter.register("before-call.s3.ListObjectsV2", answer)


def _checksums(parsed):
    return {name: str(value) for name, value in parsed.items() if name.startswith("Checksum") and value}


def _transfers(events, emitter, setup):
    """Events for every upload and download of the run's keys, the bytes S3 stores
    kept whole, and (with a guard) the conditions and their probes."""
    bucket, prefix = setup["bucket"], setup["prefix"]
    guard = setup.get("guard") or {}
    expect = guard.get("expect") or {}
    guarded = "expect" in guard
    pending = list(guard.get("probe") or ())  # kinds still to probe, one upload each
    lock = threading.Lock()
    parts = {}  # UploadId: {PartNumber: (MD5, size)}
    resume = setup.get("resume") or {}  # key: {"upload_id", "parts": {number: ETag}}, checked by datakit
    changed = set()  # keys whose upload was abandoned or refused: aborted for real (others are kept)

    def ours(params):
        key = params.get("Key")
        return key if params.get("Bucket") == bucket and isinstance(key, str) and key.startswith(prefix) else None

    def started(params, context, model=None, **_):
        key = ours(params)
        if key is None:
            return
        context["datakit_key"] = key
        events.tell(STARTED, key=key, op="download" if model is not None and model.name == "GetObject" else "upload")

    def condition(params, context, **_):
        key = ours(params)
        if key is None or not guarded or key not in expect:
            return
        etag = expect[key]
        context["datakit_condition"] = ("If-None-Match", "*") if etag is None else ("If-Match", '"%s"' % etag)
        context["datakit_guarded"] = key

    def apply(params, context, **_):
        """The condition goes into the request's headers, from which every attempt's
        request is made (an older AWS CLI's S3 model has no IfMatch / IfNoneMatch
        parameters)."""
        wanted = context.get("datakit_condition")
        if wanted is None:
            return
        headers = params.setdefault("headers", {})
        for name in ("If-Match", "If-None-Match"):
            headers.pop(name, None)
        headers[wanted[0]] = wanted[1]
        context["datakit_applied"] = wanted[0]

    def whole(params, context, **_):
        """A single upload or a part carries the MD5 of the bytes read for it."""
        key = ours(params)
        if key is None or params.get("ContentMD5"):
            return
        found = digest(params.get("Body"))
        if found is None:
            return
        md5, size = found
        params["ContentMD5"] = base64.b64encode(md5).decode("ascii")
        context["datakit_key"] = key
        context["datakit_bytes"] = size
        if "PartNumber" in params:
            with lock:
                parts.setdefault(str(params.get("UploadId")), {})[int(params["PartNumber"])] = (md5, size)
        elif size <= PROBE_MAX_BYTES and expect.get(key) is not None:
            # An upload that replaces an object can carry the probes (If-None-Match: *
            # is wrong for it, as is an ETag no object has).
            with lock:
                taken = [kind for kind in (CREATE, REPLACE) if kind in pending]
                for kind in taken:
                    pending.remove(kind)
            if taken:
                context["datakit_probes"] = taken

    def probe(request, **_):
        """An attempt with probes left is sent under the next one instead of its
        condition (the next attempt's request is made again from the request's headers,
        with the right condition)."""
        context = getattr(request, "context", None) or {}
        probes = context.get("datakit_probes")
        context["datakit_probing"] = bool(probes)
        if not probes:
            return
        for name in ("If-Match", "If-None-Match"):
            if name in request.headers:
                del request.headers[name]
        if probes[0] == CREATE:
            request.headers["If-None-Match"] = "*"
            # The key may have been deleted since the plan: a store honouring the condition
            # would then take the upload, where its right condition (If-Match) would have
            # refused it. A wrong Content-MD5 makes any store that checks it refuse the bytes.
            if "Content-MD5" in request.headers:
                del request.headers["Content-MD5"]
            request.headers["Content-MD5"] = WRONG_MD5
        else:
            request.headers["If-Match"] = '"%s"' % WRONG_ETAG

    def complete(params, context, **_):
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
        context["datakit_bytes"] = sum(sent[n][1] for n in numbers)
        if not holds(path, [sent[n] for n in numbers]):
            context["datakit_changed"] = key
            changed.add(key)
            events.tell(CHANGED, key=key, code=CHANGED_CODE)

    def abandon(context, **_):
        if "datakit_changed" not in context:
            return None
        return Answer(400), {"Error": {"Code": CHANGED_CODE, "Message": "the file changed while it was sent; "
                                       "the upload is abandoned"}, "ResponseMetadata": {"HTTPStatusCode": 400}}

    def journal(key, upload_id):
        """Say that a multipart upload began, in the events and in the project's journal
        of unfinished uploads (written at once: a kill must not lose it)."""
        events.tell(MULTIPART, key=key, upload_id=upload_id)
        path = setup.get("journal")
        if not path:
            return
        try:
            st = os.stat(os.path.join("data", *key[len(prefix):].split("/")))
            entry = {"key": key, "upload_id": upload_id, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "ino": st.st_ino, "bucket": bucket, "signature": setup.get("signature", ""),
                     "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            with lock, open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        except OSError:
            pass  # not resumable: the next push starts it over

    def mark(params, context, **_):
        """What the request is about, for the handlers at before-call (which see the HTTP
        request, not these parameters)."""
        key = ours(params)
        if key is not None:
            context["datakit_key"] = key
            context["datakit_upload"] = (params.get("UploadId"), str(params.get("PartNumber")),
                                         params.get("ContentMD5"))

    def resume_upload(context, **_):
        """A multipart upload of a key with one left on S3 continues it."""
        key = context.get("datakit_key")
        if key not in resume:
            return None
        context["datakit_resumed"] = True
        return Answer(200), {"UploadId": resume[key]["upload_id"], "Bucket": bucket, "Key": key,
                             "ResponseMetadata": {"HTTPStatusCode": 200}}

    def resume_part(params, context, **_):
        """A part S3 already holds (its ETag is the MD5 of the bytes read for it) is not sent
        again. Its answer carries the checksum the CLI asked for, as S3's would (the
        completion names it for every part, or for none)."""
        key = context.get("datakit_key")
        if key not in resume:
            return None
        upload_id, number, md5 = context.get("datakit_upload") or (None, None, None)
        held = resume[key]["parts"].get(number) if upload_id == resume[key]["upload_id"] else None
        if not held or not md5 or base64.b64decode(md5).hex() != held:
            return None  # not there, or not these bytes: sent
        answer = {"ETag": '"%s"' % held, "ResponseMetadata": {"HTTPStatusCode": 200}}
        wanted = ((context.get("checksum") or {}).get("request_algorithm") or {}).get("algorithm")
        if wanted:
            found = checksum(params.get("body"), wanted)
            if found is None:
                return None  # one we cannot make here: the part is sent again
            answer["Checksum" + wanted.upper()] = found
        return Answer(200), answer

    def keep(context, **_):
        """An upload the AWS CLI gives up (Ctrl-C, a lost connection) stays on S3, to be
        continued by the next push; one abandoned because its file changed is aborted."""
        key = context.get("datakit_key")
        if key is None or key in changed or not setup.get("journal"):
            return None
        events.tell(NOTE, text="multipart upload of %s kept on S3 for the next push" % key[len(prefix):][:200])
        return Answer(204), {"ResponseMetadata": {"HTTPStatusCode": 204}}

    def outcome(http_response, parsed, model, context, **_):
        key = context.get("datakit_key")
        if key is None or "datakit_changed" in context:
            return
        status = http_response.status_code
        error = parsed.get("Error") or {}
        code, message = str(error.get("Code") or ""), str(error.get("Message") or "")
        if 200 <= status < 300:
            etag = str(parsed.get("ETag") or "").strip('"')
            version = str(parsed.get("VersionId") or "")
            if model.name == "UploadPart":
                events.tell(BYTES, key=key, bytes=context.get("datakit_bytes", 0), part=context.get("datakit_part"))
            elif model.name == "GetObject":
                events.tell(RECEIVED, key=key, etag=etag, version_id=version,
                            bytes=int(parsed.get("ContentLength") or 0))
                if hasattr(parsed.get("Body"), "read"):
                    parsed["Body"] = _Counted(parsed["Body"], events, key)
            elif model.name == "CreateMultipartUpload":
                upload_id = str(parsed.get("UploadId") or "")
                if upload_id and not context.get("datakit_resumed"):
                    journal(key, upload_id)
            else:
                # The condition this upload went out under (None: none, or a probe that
                # the store ignored, so that the upload landed under no condition of its own).
                applied = None if context.get("datakit_probing") else context.get("datakit_applied")
                events.tell(DONE, key=key, etag=etag, version_id=version, checksums=_checksums(parsed),
                            bytes=context.get("datakit_bytes", 0), condition=applied)
            return
        if model.name in ("UploadPart", "CompleteMultipartUpload"):
            changed.add(key)  # S3 answered no: the AWS CLI's abort of this upload goes through
        if code in DIGEST_CODES:
            events.tell(CHANGED, key=key, code=code)
            return
        if "datakit_guarded" in context:
            result = verdict(status, code, message, expect[key] is not None)
            if result == REFUSED:
                events.tell(REFUSED, key=key, code=code or str(status),
                            condition="If-Match" if expect[key] is not None else "If-None-Match")
                return
            if result == UNSUPPORTED:
                events.tell(UNSUPPORTED, key=key, code=code or str(status))
                return
        events.tell(FAILED, key=key, code=code or str(status), status=status)

    def part_number(params, context, **_):
        if ours(params) is not None:
            context["datakit_part"] = params.get("PartNumber")

    def retry(response, attempts, request_dict, **_):
        context = request_dict.get("context", {})
        if response is None or "datakit_key" not in context:
            return None
        http_response, parsed = response
        error = parsed.get("Error") or {}
        code, message = str(error.get("Code") or ""), str(error.get("Message") or "")
        probes = context.get("datakit_probes")
        if probes:
            found = probe_verdict(http_response.status_code, code, message, probes[0])
            if found is None and code in DIGEST_CODES:
                probes.pop(0)  # refused for its Content-MD5 alone: nothing shown, nothing written
                return 0
            if found is not None:
                events.tell(PROBE, probe=probes.pop(0), result=found, key=context["datakit_key"],
                            code=code or str(http_response.status_code))
                if found == IGNORED:
                    probes.clear()  # the upload is done: it was what the push planned
                    return None
                return 0  # at once, under the next probe or the right condition
        if "datakit_guarded" in context and http_response.status_code == 409 \
                and code == "ConditionalRequestConflict" and attempts < CONFLICT_ATTEMPTS:
            return backoff(attempts)
        return None

    for operation in ("PutObject", "CreateMultipartUpload", "GetObject"):
        emitter.register("before-parameter-build.s3.%s" % operation, started)
    emitter.register("before-parameter-build.s3.UploadPart", part_number)
    emitter.register("before-parameter-build.s3.AbortMultipartUpload", mark)
    emitter.register("before-call.s3.CreateMultipartUpload", resume_upload)
    emitter.register("before-call.s3.UploadPart", resume_part)
    emitter.register("before-call.s3.AbortMultipartUpload", keep)
    if setup.get("whole", True):
        for operation in ("PutObject", "UploadPart"):
            emitter.register("before-parameter-build.s3.%s" % operation, whole)
        emitter.register("before-parameter-build.s3.CompleteMultipartUpload", complete)
        emitter.register("before-call.s3.CompleteMultipartUpload", abandon)
    emitter.register("before-parameter-build.s3.UploadPart", mark)  # (after whole: its MD5)
    if guarded:
        for operation in ("PutObject", "CompleteMultipartUpload"):
            emitter.register("before-parameter-build.s3.%s" % operation, condition)
            emitter.register("needs-retry.s3.%s" % operation, retry)
            emitter.register("before-call.s3.%s" % operation, apply)
        emitter.register("before-sign.s3.PutObject", probe)
    for operation in ("PutObject", "UploadPart", "CompleteMultipartUpload", "CreateMultipartUpload", "GetObject"):
        emitter.register("after-call.s3.%s" % operation, outcome)


def install(emitter, setup):
    """Add this run's hooks (``setup``, see engine/cli.py) to an AWS CLI's event
    emitter (or botocore session), and say in the events file that they are in.

    With ``"wait"`` in the setup (an AWS CLI started early, while datakit plans), the
    rest of the setup comes as one line on stdin once the CLI is up, before the
    command does anything; an empty line or a closed stdin ends the CLI there."""
    events = Events(setup["events"])
    events.tell(LOADED, cli=cli_version(), plugin=VERSION, python=sys.version.split()[0])
    if setup.get("preflight"):
        return
    _interlock(emitter)
    if not setup.get("wait"):
        emitter.register("session-initialized", _hooks(events, emitter, setup))
        return

    def wait(session, **_):
        line = sys.stdin.readline()
        if not line.strip():
            os._exit(0)  # nothing to do: datakit planned no transfer
        setup.update(json.loads(line))
        threading.Thread(target=_watch_stdin, daemon=True).start()
        _hooks(events, emitter, setup)(session)

    emitter.register("session-initialized", wait)


def _hooks(events, emitter, setup):
    """Register the run's hooks; the settings for the command follow at session-initialized
    (the returned handler)."""
    if setup.get("listing") is not None:
        _listing(emitter, setup)
    if setup.get("bucket") is not None:
        _transfers(events, emitter, setup)
    return _settings(events, emitter, setup)


def _read_setup():
    """This run's setup, from the file DATAKIT_DATA_PLUGIN names; None without one."""
    path = os.environ.get(SETUP_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            setup = json.load(fh)
    except (OSError, ValueError):
        return None
    return setup if isinstance(setup, dict) and isinstance(setup.get("events"), str) else None


_SETUP = _read_setup()
# The user's own [plugins] folder (cli_legacy_plugin_path), which the config copy
# replaced with ours: their plugins, imported after this one, are found there.
if _SETUP is not None and isinstance(_SETUP.get("user_plugin_path"), str):
    sys.path.extend(_SETUP["user_plugin_path"].split(os.pathsep))  # as the AWS CLI reads it


def awscli_initialize(cli):
    """The AWS CLI's plugin entry point: ``cli`` is its event emitter."""
    if _SETUP is not None:
        install(cli, _SETUP)
