"""Push: upload what changed locally, delete (with `delete`) what was deleted locally.

The AWS CLI uploads from a staging folder of hard links to exactly the planned
files (copies with a fresh time where sync would skip them), each upload under
the conditions of compare-and-swap when the store takes them (conditions.py).
Then S3 is asked again, and each planned path gets a verdict (``upload_verdict``):
only an object whose ETag is the local file's is recorded.
"""
import hashlib
import json
import logging
import os
import sys
import threading
import time
from typing import Callable, Iterable

from . import aws_cli, awsconfig, conditions, files, names, s3, uploads, versions
from .engine import cli as engine_cli
from .masking import mask_secrets
from .exceptions import DatakitDataError, Interrupted
from .files import copy_into, link_or_copy, why
from .plan import Local, Remote
from .safesync import Run
from .threads import Beside

log = logging.getLogger(__name__)

# What the check after upload finds for one planned path.
RECORDED = "recorded"  # S3 holds exactly the bytes this push sent
NOT_UPLOADED = "not uploaded"  # the object is the one the plan saw, or none: nothing to record
GONE_AFTER_UPLOAD = "gone after upload"  # sent, then deleted by someone
RACED = "raced"  # refused under its condition: someone pushed meanwhile
DELETED_MEANWHILE = "deleted meanwhile"  # refused under its condition: someone deleted it meanwhile
WRONG_REFUSAL = "wrong refusal"  # refused, yet S3 still holds what the plan saw
CHANGED_LOCALLY = "changed locally"  # the file changed while the push ran
SOMEONE_ELSES = "someone else's"  # S3 holds another version, which this push did not send
SENT_CHANGED = "sent, then changed"  # S3 holds whole bytes this push sent, but the file no longer holds them
BUSY = "busy"  # S3 answered 409 to every try and still holds what the plan saw

#: The local side recorded for a file whose content is not known: no file has it.
UNKNOWN_FILE = Local(-1, -1, None)

#: What each verdict tells the user, for those that name the file.
WORDS = {
    CHANGED_LOCALLY: "it changed while the push ran; push again",
    SENT_CHANGED: "it changed while the push ran; push again",
    BUSY: ("S3 answered ConditionalRequestConflict (another write to it in flight) to every try and still holds "
           "the version this push planned over; push again in a moment"),
    SOMEONE_ELSES: "S3 holds another version: someone pushed this file while this push ran",
    RACED: "S3 holds another version: someone pushed data/{path} after this push planned it",
    DELETED_MEANWHILE: ("S3 no longer holds the version this push planned over: someone deleted data/{path} "
                        "after this push planned it"),
    GONE_AFTER_UPLOAD: ("S3 no longer holds it: someone deleted data/{path} right after this push sent it; "
                        "a push sends it anew"),
    WRONG_REFUSAL: ("S3 refused its conditional upload yet still holds the version this push planned over: the "
                    "store, or a proxy in front of it, answers conditional writes wrongly; push again"),
}
DELETE_RACED = "S3 holds another version: someone pushed data/{path} after this push planned to delete it"
#: Verdicts that are conflicts, and those that skip the file (exit 2).
CONFLICTS = (RACED, DELETED_MEANWHILE, GONE_AFTER_UPLOAD, SOMEONE_ELSES)
SKIPS = (CHANGED_LOCALLY, SENT_CHANGED, WRONG_REFUSAL, BUSY)


def upload_verdict(planned: Remote | None, now: Remote | None, *, ours: str | None, refusal: str | None = None,
                   sent: bool = False, sent_etag: str = "", changed: bool = False,
                   etag_is_md5: Callable[[], bool] = lambda: True,
                   as_scanned: Callable[[], bool] = lambda: True) -> str:
    """What became of one planned upload: ``planned`` is the object the plan saw
    (None: none), ``now`` the one S3 holds after the upload (None: none), ``ours`` the
    local file's ETag (asked only when S3 holds an object), ``refusal`` the S3 code of a
    refused conditional upload, ``sent`` whether the AWS CLI reported the upload and
    ``sent_etag`` the ETag S3 answered it with, ``changed`` whether the upload was
    stopped because the file changed as it was sent. ``etag_is_md5()`` (not with
    SSE-KMS or SSE-C) and ``as_scanned()`` (the local file unchanged since the scan)
    are asked only when they decide."""
    # Is S3 still holding what the plan saw (or nothing, as the plan saw)?
    unchanged = (now is None and planned is None) or (
        now is not None and planned is not None and now.etag == planned.etag)
    if refusal is not None and not (now is not None and now.etag == ours):
        # (S3 holding our bytes: a retried write that had landed, recorded below.)
        if unchanged and refusal in ("PreconditionFailed", "412"):
            return WRONG_REFUSAL
        if unchanged and refusal == "ConditionalRequestConflict":
            return BUSY
        if now is None and planned is not None:
            return DELETED_MEANWHILE  # (whatever the store's code: SeaweedFS answers 412)
        return refused_verdict(refusal)
    if changed and unchanged:
        return CHANGED_LOCALLY  # stopped before S3 took any of it
    if now is None:
        return GONE_AFTER_UPLOAD if sent else NOT_UPLOADED
    if now.etag == ours or not etag_is_md5():
        return RECORDED
    if sent_etag and now.etag == sent_etag:
        return SENT_CHANGED
    if same_object(now, planned):
        return NOT_UPLOADED  # the AWS CLI stopped first
    return SOMEONE_ELSES if as_scanned() else CHANGED_LOCALLY


def refused_verdict(code: str) -> str:
    """What a conditional upload S3 refused with this code means: someone deleted the
    object meanwhile, or pushed another version."""
    return DELETED_MEANWHILE if code in ("NoSuchKey", "404") else RACED


def same_object(new: Remote, old: Remote | None) -> bool:
    """Is this the very object listed before the push? Any upload gets a new time."""
    if old is None or (new.etag, new.size) != (old.etag, old.size):
        return False
    then, now = s3.seconds(old.last_modified), s3.seconds(new.last_modified)
    if then is None or now is None:
        return old.last_modified == new.last_modified
    # In whole seconds: listings of MinIO and Ceph carry milliseconds, a HEAD's HTTP date none.
    return int(then) == int(now)


class Push(Run):
    """Upload exactly the planned files, guarded; delete what was deleted locally."""

    direction = "push"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Asked while the run plans and transfers, for the uploads' metadata.
        self.pushed_by = Beside(versions.pusher, self.layout.root)
        self.memory = conditions.Memory(self.layout)
        self.answers: engine_cli.Answers | None = None  # what became of the conditional uploads
        self.staged: dict[str, None] = {}  # the paths in the staging folder
        self.all_sent = False  # an AWS CLI without conditions uploaded every staged path

    def carry_out(self) -> None:
        plan, record = self.outcome.plan, self.record
        hasher = None
        try:
            if plan.delete:
                self._delete()
            if plan.transfer:
                # What S3 must hold afterwards, read while the AWS CLI uploads.
                hasher = _Hasher(self.scan.content, plan.transfer)
                self._upload()
        finally:
            in_flight = sys.exc_info()[1]
            try:
                if hasher is not None:
                    hasher.finish()
                # After Ctrl-C or a signal, stop at once: what did arrive is found
                # identical (and recorded) by the next run.
                if (plan.transfer or plan.delete) and not isinstance(in_flight, (KeyboardInterrupt, Interrupted)):
                    self._check_after_push(in_flight)
            finally:
                record.stamp("push")
                record.save()

    def _made_with(self) -> list[str]:
        """What each upload is created with: the flag words, and who pushes."""
        return [*self.flags.cli, *versions.metadata_options(self.pushed_by.answer() or "")]

    def transfer_args(self) -> list[str]:
        return aws_cli.upload_args(self.settings, self._made_with(), root=self.selection.root)

    def _upload(self) -> None:
        """Upload exactly the planned paths in one concurrent `aws s3 sync` of the staging folder.

        The staging folder holds only the planned files, as hard links. An AWS CLI with
        datakit's plugin is told that S3 holds none of them: it sends each one without
        listing the folder again. One without lists it, and skips a file of the object's
        size that is not newer than it, so such a file is staged as a copy with a fresh
        time instead. A file that vanished or became unreadable since the scan is named
        as skipped.
        """
        outcome = self.outcome
        stage = os.path.join(self.staging, "data")
        told = self.cli.hooks
        into_stage = names.Inside(stage)
        for path in outcome.plan.transfer:
            source = os.path.join(self.layout.data, path)
            target = into_stage.prepared(path)
            try:
                newer_than = None if told else _sync_would_skip(source, outcome.remote.get(path))
                if newer_than is None:
                    link_or_copy(source, target)
                else:
                    fresh = int(max(time.time(), newer_than) + 2) * 10**9
                    copy_into(source, target, fresh)
            except FileNotFoundError:
                outcome.skipped[path] = "it was deleted or moved while the push ran"
                continue
            except OSError as err:
                outcome.skipped[path] = why(err)
                continue
            self.staged[path] = None
        if not self.staged:
            return
        args = self.transfer_args()
        log.log(self.debug_level, "Running: %s", aws_cli.describe(args))
        guard = None
        if self.cli.hooks:
            # Each kind until it is proven (a store that ignores it is asked again each time).
            probe = tuple(kind for kind in (conditions.CREATE, conditions.REPLACE)
                          if self.memory.get(self.settings, kind) in (None, conditions.IGNORED))
            guard = conditions.Guard(self.settings, self._expected(), probe)
        url = mask_secrets(self.settings.s3_url)
        chunk = awsconfig.multipart_sizes(self.settings)[1]
        shown = self.progress(
            {path: self.outcome.local[path].size for path in self.staged},
            lambda path: f"upload: data/{names.printable(path)} to {url}{names.printable(path)}",
            part_size=lambda size: awsconfig.part_size(size, chunk))
        # Continued only if created with the same options (not from the same folder).
        extra = self._continuing(chunk, hashlib.sha256(json.dumps(self._made_with()).encode()).hexdigest()[:32]) \
            if self.cli.hooks else None
        try:
            self.cli.run(args, self.settings, "push", events=os.path.join(self.staging, "events.jsonl"),
                         guard=guard and guard.message(), guarded=guard.expect if guard else {},
                         probes=guard.probe if guard else (), listing=[] if told else None, progress=shown,
                         extra=extra)
        finally:
            if guard is not None:
                self.answers = self.cli.answers
                self._learn(self.answers)
                # Completed, or abandoned or refused (the AWS CLI aborts those): nothing to continue.
                answers = self.answers
                uploads.forget(self.layout, self.settings, [*answers.sent, *answers.changed, *answers.refused,
                                                            *answers.unsupported, *answers.failed])
        if guard is not None and not self.answers.loaded:
            # It said it loads the plugin, and then ran without it: nothing it sent carried
            # a condition, and it listed the folder itself. Trust nothing but the check after.
            log.warning("The AWS CLI ran this push without datakit's plugin, though it loaded it when asked: this "
                        "push's uploads are checked after upload only, and a file it did not send is named.")
            guard, self.answers = None, None
        if guard is None:
            # The AWS CLI ended well: it uploaded every staged file (each is newer than,
            # or differs in size from, what its listing saw).
            self.all_sent = True
        elif self.answers.unsupported:
            self._upload_again(args, set(self.answers.unsupported))
        if guard is not None and self.answers.unguarded:
            unguarded = sorted(self.answers.unguarded)
            log.warning("%d file(s) went to S3 without their condition (the store ignored a probe's, e.g. %s): "
                        "checked after upload only.", len(unguarded), names.printable(unguarded[0]))
        self._say_protection()

    def _continuing(self, chunk: int, signature: str) -> dict:
        """The plugin's journal of unfinished uploads, and those of this push's files it
        continues: {key: {"upload_id", "parts": {number: ETag}}} of the parts S3 holds
        that are this file's bytes (see uploads.py). One with no such part is aborted."""
        resume = {}
        into_data = names.Inside(self.layout.data)
        local = self.outcome.local
        continuing = uploads.settle(self.layout, self.settings, local, self.staged, covers=self.selection.covers,
                                    signature=signature)
        for path, entry in continuing.items():
            size = local[path].size
            try:
                held = uploads.held_parts(self.settings, entry, into_data(path), awsconfig.part_size(size, chunk))
            except names.UnsafePath:
                held = {}
            if held:
                resume[self.settings.key_prefix + path] = {"upload_id": entry.upload_id, "parts": held}
                log.info("Continuing the upload of data/%s: %d part(s) already on S3.", names.printable(path),
                         len(held))
            elif s3.abort_upload(self.settings, path, entry.upload_id):
                uploads.forget(self.layout, self.settings, [path])
        uploads.renew(self.layout, self.settings, [key[len(self.settings.key_prefix):] for key in resume])
        return {"journal": uploads.Journal(self.layout, self.settings).path, "resume": resume,
                "signature": signature}

    def _kind(self, path: str) -> str:
        """The kind of condition the upload of path carries (see conditions.KINDS)."""
        seen = self.outcome.remote.get(path)
        return conditions.kind_of(None if seen is None else seen.etag)

    def _expected(self) -> dict[str, str | None]:
        """The conditions of the uploads: the ETag of each object the plan saw, None
        where it saw none, for the kinds the store has not rejected. (An object listed
        without an ETag cannot be named.)"""
        expect: dict[str, str | None] = {}
        for path in self.outcome.plan.transfer:
            seen = self.outcome.remote.get(path)
            if not self.memory.supported(self.settings, self._kind(path)):
                continue
            if seen is None:
                expect[path] = None
            elif seen.etag:
                expect[path] = seen.etag
        return expect

    def _learn(self, found: engine_cli.Answers) -> None:
        """Remember what the probes, and a store rejecting the headers, showed of each kind."""
        rejected = {}
        for path, code in found.unsupported.items():
            rejected.setdefault(self._kind(path), code)
        for kind, (state, code) in found.probes.items():
            if state == conditions.UNSUPPORTED:
                rejected.setdefault(kind, code)
            else:
                self.memory.learn(self.settings, kind, state, code)
        for kind, code in sorted(rejected.items()):
            if self.memory.learn(self.settings, kind, conditions.UNSUPPORTED, code):
                log.warning(conditions.unsupported_notice(self.settings, code, kind))

    def _say_protection(self) -> None:
        """Say which of this push's uploads were not protected by a proven compare-and-swap."""
        kinds = sorted({self._kind(path) for path in self.staged}, reverse=True)  # (replace, create)
        found = conditions.protection(self.memory, self.settings, self.cli.without_hooks)
        said: dict[tuple[str, str], list[str]] = {}
        for kind in kinds:
            if found[kind]["mode"] != conditions.SWAP:
                said.setdefault((found[kind]["mode"], found[kind]["why"]), []).append(conditions.COVERS[kind])
        for (mode, why), covers in said.items():
            log.warning("This push's %s %s %s: %s.", " and ".join(covers), "are", mode, why)

    def _upload_again(self, args: list[str], paths: set[str]) -> None:
        """Upload these paths once more without conditions, on a store that rejected them,
        from a staging folder of their own: nothing sent or refused is in it."""
        staged = names.Inside(os.path.join(self.staging, "data"))
        again = os.path.join(self.staging, "again")
        into_again = names.Inside(os.path.join(again, "data"))
        for path in sorted(paths):
            link_or_copy(staged(path), into_again.prepared(path))
        with engine_cli.open_engine(memory=self.layout.engine) as cli:
            cli.prepare(again, {}, self.cli_concurrency)
            try:
                cli.run(args, self.settings, "push", events=os.path.join(again, "events.jsonl"),
                        guard={"expect": {}, "probe": []}, listing=[] if cli.hooks else None)
            finally:
                self.answers.merge(cli.answers, paths)

    def _delete(self) -> None:
        """Delete on S3 what was deleted locally, each object only if it is still the
        version the plan saw: a delete that lost to a concurrent push is a conflict."""
        expect = {path: self.outcome.remote[path].etag for path in self.outcome.plan.delete}
        state = self.memory.get(self.settings, conditions.DELETE)
        conditional = state != conditions.UNSUPPORTED
        # Until the store has proven that it refuses a conditional delete, each object is
        # also checked just before: a store that ignores the conditions would delete any version.
        check_first = state != conditions.PROVEN
        try:
            refused, probed = s3.delete_remote(self.settings, expect, conditional=conditional,
                                               check_first=check_first, probe=check_first)
        except s3.ConditionsUnsupported as err:
            if self.memory.learn(self.settings, conditions.DELETE, conditions.UNSUPPORTED, err.code):
                log.warning(conditions.unsupported_notice(self.settings, err.code, conditions.DELETE))
            refused, probed = s3.delete_remote(self.settings, expect, conditional=False)
        if probed is not None:
            self.memory.learn(self.settings, conditions.DELETE, *probed)
        for path in refused:
            self.conflict(path, DELETE_RACED.format(path=names.printable(path)))

    def _check_after_push(self, in_flight: BaseException | None) -> None:
        """List S3 again and record what is verified there (uploads, deletions)."""
        outcome, plan = self.outcome, self.outcome.plan
        checked = [*plan.transfer, *plan.delete]
        # A listing reads 1000 objects per request, one request after another; HEAD
        # requests read one object each, several at a time.
        pages = len(outcome.remote) // 1000 + 1
        try:
            if len(checked) <= s3.HEAD_WORKERS * pages:
                after = s3.head_remote(self.settings, checked)
            else:
                after = s3.list_remote(self.settings, under=self.selection.root)
        except DatakitDataError:
            answers = self.answers or engine_cli.Answers()
            for path, code in answers.refused.items():
                self._name(path, refused_verdict(code))
            if in_flight is None:
                raise
            return  # the error already on its way says more
        for path in plan.transfer:
            if path not in outcome.skipped:  # else not uploaded: nothing to record
                self._verify_upload(path, after.get(path))
        for path in plan.delete:
            if path not in after and path not in plan.conflicts:
                self.record.forget(path)
                outcome.deleted += 1
                self.done.add(path)

    def _verify_upload(self, path: str, now: Remote | None) -> None:
        """Record path only if S3 now holds exactly the bytes this push sent."""
        outcome = self.outcome
        answers = self.answers or engine_cli.Answers()
        ours = None
        if now is not None:
            # S3's ETag in whatever shape the store gives it (rclone's is a plain MD5), else ours.
            ours = now.etag if self.scan.matches(path, now.etag) else self.scan.content(path)
        verdict = upload_verdict(
            outcome.remote.get(path), now, ours=ours, refusal=answers.refused.get(path),
            sent=path in answers.sent or (self.all_sent and path in self.staged),
            sent_etag=answers.sent.get(path, ""), changed=path in answers.changed,
            etag_is_md5=lambda: s3.etag_is_md5(self.settings, path),
            as_scanned=lambda: files.as_scanned(os.path.join(self.layout.data, path), outcome.local[path]),
        )
        if verdict == RECORDED:
            self.record.set(path, outcome.local[path], now.etag)
            outcome.sent += 1
            self.done.add(path)
            outcome.sent_bytes += now.size
        elif verdict == SENT_CHANGED:
            # S3 holds whole bytes this push sent: recorded as S3's version, with a local
            # file no scan can match, so the next push compares the file's content again.
            self.record.set(path, UNKNOWN_FILE, now.etag)
            self._name(path, verdict)
        elif verdict == WRONG_REFUSAL:
            self._name(path, verdict)
            wrongly = "412 on an unchanged object"
            kind = self._kind(path)
            if self.memory.learn(self.settings, kind, conditions.UNSUPPORTED, wrongly):
                log.warning(conditions.unsupported_notice(self.settings, wrongly, kind))
        elif verdict != NOT_UPLOADED:
            self._name(path, verdict)

    def _name(self, path: str, verdict: str) -> None:
        """A verdict that names the file: a conflict, or a skipped file."""
        words = WORDS[verdict].format(path=names.printable(path))
        if verdict in SKIPS:
            self.outcome.skipped[path] = words
        else:
            self.conflict(path, words)


class _Hasher:
    """Reads the files being uploaded (their ETags, cached by content) in a thread."""

    def __init__(self, content: Callable[[str], str | None], paths: Iterable[str]):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(content, list(paths)), daemon=True)
        self.thread.start()

    def _run(self, content, paths):
        for path in paths:
            if self.stop.is_set():
                return
            content(path)

    def finish(self) -> None:
        """Wait for the reading to end; after a failure, only for the file being read."""
        if sys.exc_info()[0] is not None:
            self.stop.set()
        self.thread.join()


def _sync_would_skip(source, obj) -> float | None:
    """The object's time (seconds) when `aws s3 sync` would skip this file (same size,
    not newer than the object), else None."""
    if obj is None:
        return None
    st = os.stat(source)
    if st.st_size != obj.size:
        return None
    stamp = s3.seconds(obj.last_modified)
    if stamp is None:
        return time.time() + 86400  # unknown: a time surely after it
    return stamp if st.st_mtime <= stamp + 1 else None
