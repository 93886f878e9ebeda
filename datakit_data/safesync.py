"""Safe push and pull: plan against the sync record, transfer with the AWS CLI.

One listing of the S3 folder, one scan of data/ and the sync record give a plan
(see plan.py). The transfers then run as a single concurrent AWS CLI command:
push runs `aws s3 sync` from a staging folder of hard links to exactly the
planned files (copies with a fresh time where sync would skip them); pull runs
`aws s3 sync` into a staging folder where every object that must not be
downloaded is left out by include patterns (or, for a large plan spread over
many folders, stood in for by an empty sparse placeholder), then moves the
downloads into data/. The record is updated only for what was verified: uploads
whose ETag on S3 is the local file's, downloads that arrived whole.

A push or pull is one `Sync` object, built once from the project's folders, the
settings, the options of the flag words and the two output callbacks.
"""
import contextlib
import errno
import functools
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

from . import aws_cli, awsconfig, conditions, names, report, s3, versions
from .masking import mask_secrets
from .exceptions import DatakitDataError, FlagError, Interrupted
from .flags import Flags
from .layout import Layout
from .plan import TEMPORARY_PREFIX, TEMPORARY_SUFFIX, Local, Plan, Remote, left_alone, local_etag, make_plan, scan_local
from .record import SyncRecord
from .selection import Selection
from .settings import Settings

log = logging.getLogger(__name__)

#: Files this big say so before they are read to compare their content.
BIG_FILE = 256 * 1024 * 1024
CONCURRENT_WRITE = "S3 holds another version: someone pushed this file while this push ran"
#: Refused by S3 under the push's conditions (conditions.py).
RACED = "S3 holds another version: someone pushed data/{path} after this push planned it. Pull, then push again."
DELETED_MEANWHILE = ("S3 no longer holds the version this push planned over: someone deleted data/{path} "
                     "after this push planned it. Pull, then push again.")
GONE_AFTER_UPLOAD = ("S3 no longer holds it: someone deleted data/{path} right after this push sent it. "
                     "`datakit data push force` sends it again.")
BOGUS_REFUSAL = ("S3 refused its conditional upload yet still holds the version this push planned over: the "
                 "store, or a proxy in front of it, answers conditional writes wrongly; push again")
DELETE_RACED = ("S3 holds another version: someone pushed data/{path} after this push planned to delete it. "
                "Pull, then push again.")
CHANGED_MEANWHILE = "changed locally while the pull ran; left as it is"
CASE_CLASH = "its name is another object's when case is ignored, as here; rename one of them on S3"


@dataclass
class Scan:
    """data/ and the S3 folder as found: files, objects, and what neither side may use."""

    local: dict
    remote: dict
    skipped: dict  # local files that cannot be pushed: {path: why}
    refused: dict  # objects whose keys cannot be local paths: {path: why}
    same: Callable[[str], bool]  # identical content on both sides?
    content: Callable[[str], str | None]  # the local file's ETag, read once
    left_out: int = 0  # junk and excluded files (local ones and objects) left out
    others: dict = field(default_factory=dict)  # {path: size} of safe objects listed but not in this run
    hidden: list = field(default_factory=list)  # unsafe keys listed but not in this run
    unfollowed: list = field(default_factory=list)  # links left out by no-follow-symlinks

    @property
    def left_alone(self) -> dict[str, str]:
        """{path: why} of what the scan could not look at, which nothing may change."""
        return left_alone(self.skipped, self.unfollowed)

    def recorded(self, record: SyncRecord, selection: Selection) -> dict:
        """The record's entries for the paths this run looks at."""
        return {path: entry for path, entry in record.files.items()
                if selection.covers(path) and not selection.left_out(path)}

    def as_recorded(self, record: SyncRecord) -> Callable[[str], bool]:
        """as_recorded(path): does the local file still hold the content recorded for it?"""
        return lambda path: self.content(path) is not None and self.content(path) == record.files[path]["etag"]


def gather(layout: Layout, settings: Settings, flags: Flags = Flags(),
           selection: Selection = Selection(), *, tidy: bool = False) -> Scan:
    """Scan data/ and list S3 (the selection's part of each), leaving out junk and
    excluded paths, and setting aside keys that must never become local paths.
    ``tidy`` (a run holding the lock) removes our temporary files a killed run left."""
    data_dir = layout.data
    present = os.path.isdir(data_dir)
    left: list[str] = []
    unfollowed: list[str] = []
    local, skipped = (scan_local(data_dir, flags.follow_symlinks, selection, left, unfollowed, tidy=tidy)
                      if present else ({}, {}))
    prefix = len(f"{settings.path}/".encode("utf-8")) if settings.path else 0
    # (A path of fewer than a quarter as many characters fits whatever they are.)
    for path in [p for p in local if prefix + 4 * len(p) > names.KEY_MAX
                 and prefix + len(p.encode("utf-8")) > names.KEY_MAX]:
        del local[path]
        skipped[path] = f"its S3 key would be longer than S3's {names.KEY_MAX} bytes; shorten its path"
    listed = s3.list_remote(settings, under=selection.root)
    folded = names.is_case_insensitive(data_dir) if present else False
    unsafe = names.refused_keys(listed, folded, path_max=_path_max(layout))
    ours = {path for path in listed if selection.covers(path)}
    left_remote = {path for path in ours if selection.left_out(path)}
    ours -= left_remote
    refused = {path: why for path, why in unsafe.items() if path in ours}
    remote = {path: listed[path] for path in ours if path not in refused}
    others = {path: obj.size for path, obj in listed.items() if path not in ours and path not in unsafe}
    hidden = [path for path in unsafe if path not in ours]

    @functools.cache
    def sizes() -> tuple[int, int]:
        return awsconfig.multipart_sizes(settings)

    @functools.cache
    def content(path: str) -> str | None:
        size = local[path].size
        if size >= BIG_FILE:
            log.info("Reading data/%s (%s) to compare its content...", names.printable(path),
                     report.human_bytes(size))
        try:
            return local_etag(os.path.join(data_dir, path), *sizes())
        except OSError:
            return None

    scan = Scan(local, remote, skipped, refused, lambda path: False, content, len(left) + len(left_remote),
                others, hidden, unfollowed)

    def same(path: str) -> bool:  # against scan.remote, which an --as-of pull replaces
        return content(path) is not None and content(path) == scan.remote[path].etag

    scan.same = same
    return scan


def resolve(layout: Layout, settings: Settings, selection: Selection) -> Selection:
    """A path word without a trailing / names a folder when data/ or S3 has one there."""
    path = selection.path
    if not path:
        return selection
    local = os.path.join(layout.data, path.rstrip("/"))
    if path.endswith("/"):
        if os.path.isfile(local):
            raise FlagError(f"data/{names.printable(path)} is a file, not a folder: write it without the trailing /.")
        return selection
    if os.path.isdir(local) or (not os.path.lexists(local) and s3.has_objects(settings, path + "/")):
        return selection.as_folder()
    return selection


def _check_path_found(scan: Scan, selection: Selection, settings: Settings) -> None:
    """A path word that names nothing, in data/ or on S3, is an error naming it."""
    if not selection.path or scan.local or scan.remote or scan.skipped or scan.refused:
        return
    shown = f"data/{names.printable(selection.path)}"
    if scan.left_out:
        raise FlagError(
            f"{shown} is junk or excluded by the \"exclude\" patterns of the project or global config: "
            "it never syncs. Change the patterns to sync it."
        )
    raise FlagError(
        f"Nothing to sync at {shown}: no file there in data/ nor in {mask_secrets(settings.s3_url)}. "
        "Check the path (`datakit data status` shows what there is)."
    )


def _path_max(layout: Layout) -> int:
    """The longest path below data/ that fits under the staging folder, with room for
    the AWS CLI's temporary suffix."""
    try:
        limit = os.pathconf(layout.root, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # AttributeError: Windows has no pathconf
        limit = 4096 if os.name == "posix" else 260
    deepest = os.path.join(os.path.abspath(layout.staging("pull", 4294967296)), "data", "")
    return limit - len(deepest.encode("utf-8")) - 16


@dataclass
class Outcome:
    """What a push or pull did, for the summary line and the exit code."""

    plan: Plan
    local: dict
    remote: dict
    skipped: dict
    sent: int = 0
    sent_bytes: int = 0
    deleted: int = 0
    seconds: float = 0.0
    dryrun: bool = False
    refused: dict = field(default_factory=dict)
    content: Callable[[str], str | None] | None = None
    others: dict = field(default_factory=dict)  # {path: size}: objects listed that are not part of the run
    hidden: list = field(default_factory=list)  # unsafe keys listed that are not part of the run


class Sync:
    """One push or pull of a project: plan, transfer, verify, record, report."""

    def __init__(self, direction: str, layout: Layout, settings: Settings, options: Flags,
                 say: Callable[[str], None], warn: Callable[[str], None], selection: Selection = Selection(),
                 as_of: versions.AsOf | None = None):
        self.direction = direction
        self.layout = layout
        self.settings = settings
        self.options = options
        self.selection = selection
        self.as_of = as_of  # pull: S3's state at a moment (versioned buckets)
        self.version_ids: dict[str, str] = {}
        self.say = say
        self.warn = warn
        self.staging = None  # set while a transfer is prepared
        self.cli = None
        self.cli_env: Mapping[str, str] = {}  # the AWS CLI's environment for this run
        self.cli_concurrency: tuple[int, bool] | None = None  # what the bundled AWS CLI is told
        self.memory = conditions.Memory(layout)
        self.answers: conditions.Answers | None = None  # what became of the conditional uploads
        self._staged: dict[str, None] = {}  # the paths in the staging folder
        self._all_sent = False  # an AWS CLI without conditions uploaded every staged path

    def run(self) -> Outcome:
        """Push or pull safely, then say one summary line; conflicts and skips raise."""
        started = time.monotonic()
        # Asked while the run plans and transfers, for the summary and the uploads.
        self.pushed_by = _Aside(versions.pusher, self.layout.root) if self.direction == "push" else None
        with self._transfer():
            outcome = self._push() if self.direction == "push" else self._pull()
        outcome.seconds = time.monotonic() - started
        self.say(report.summary(outcome))
        # Asked only now, and only when it matters: beside the transfer it would be one
        # more connection than max_concurrent_requests allows.
        if not outcome.dryrun and _overwrote(outcome) and (
                s3.versioning(self.settings) in ("", "Suspended")):
            what = "pushed over or deleted on S3" if self.direction == "push" else "replaced or deleted in data/"
            self.warn(f"Bucket {self.settings.bucket} keeps no versions: what this {self.direction} {what} "
                      f"cannot be undone. {versions.unversioned_hint(self.settings)}")
        report.finish(outcome, self.direction, mask_secrets(self.settings.s3_url))
        return outcome

    @contextlib.contextmanager
    def _transfer(self) -> Iterator[None]:
        """A staging folder and an AWS CLI process, prepared while the plan is made."""
        # Started first: it loads awscli while everything else is prepared.
        # An --as-of pull downloads versions in-process: no AWS CLI (it cannot sync versions).
        with contextlib.nullcontext() if self.options.dryrun or self.as_of else aws_cli.Cli() as cli:
            for folder in self.layout.stale_staging():  # left by killed runs; we hold the lock
                shutil.rmtree(folder, ignore_errors=True)
            if self.options.dryrun:
                yield
                return
            self.staging = self.layout.staging(self.direction)
            os.makedirs(os.path.join(self.staging, "data"))
            try:
                bundled = cli is None or cli.carries_conditions
                copy = contextlib.nullcontext({}) if bundled else awsconfig.config_copy(self.settings, self.staging)
                with copy as env:
                    self.cli_concurrency = awsconfig.concurrency(self.settings) if bundled and cli else None
                    if cli is not None:
                        cli.prepare(self.staging, env, self.cli_concurrency)
                    self.cli, self.cli_env = cli, env
                    yield
            finally:
                self.cli = None
                shutil.rmtree(self.staging, ignore_errors=True)

    # planning -------------------------------------------------------------

    def _begin(self) -> tuple[Outcome, SyncRecord]:
        """Plan, name conflicts and kept files, and with `dryrun` show the plan."""
        scan = gather(self.layout, self.settings, self.options, self.selection, tidy=True)
        if self.as_of is not None:
            self._as_of(scan)
        _check_path_found(scan, self.selection, self.settings)
        record = SyncRecord.load(self.layout, self.settings)
        plan = make_plan(
            self.direction, scan.local, scan.remote, scan.recorded(record, self.selection),
            delete=self.options.delete, force=self.options.force, same=scan.same,
            as_recorded=scan.as_recorded(record), unreadable=scan.left_alone,
        )
        pushing = self.direction == "push"
        # Files pull cannot read locally are kept by the plan; objects push cannot
        # pull back are no concern of push.
        outcome = Outcome(
            plan, scan.local, scan.remote, dict(scan.skipped) if pushing else {},
            dryrun=self.options.dryrun, refused={} if pushing else scan.refused, content=scan.content,
            others=scan.others, hidden=scan.hidden,
        )
        report.name_conflicts_and_kept(plan, self.warn)
        if outcome.dryrun:
            url = mask_secrets(self.settings.s3_url)
            for path in map(names.printable, plan.transfer):
                self.say(f"(dryrun) upload: data/{path} to {url}{path}" if pushing
                         else f"(dryrun) download: {url}{path} to data/{path}")
            for path in map(names.printable, plan.delete):
                self.say(f"(dryrun) delete: {url if pushing else 'data/'}{path}")
        else:
            _settle(plan, scan.local, scan.remote, record)
        return outcome, record

    # push -----------------------------------------------------------------

    def _push(self) -> Outcome:
        """Upload what changed locally, delete (with `delete`) what was deleted locally."""
        outcome, record = self._begin()
        if outcome.dryrun:
            return outcome
        plan = outcome.plan
        hasher = None
        try:
            if plan.delete:
                self._delete(outcome)
            if plan.transfer:
                # What S3 must hold afterwards, read while the AWS CLI uploads.
                hasher = _Hasher(outcome.content, plan.transfer)
                self._upload(outcome)
        finally:
            in_flight = sys.exc_info()[1]
            try:
                if hasher is not None:
                    hasher.finish()
                # After Ctrl-C or a signal, stop at once: what did arrive is found
                # identical (and recorded) by the next run.
                if (plan.transfer or plan.delete) and not isinstance(in_flight, (KeyboardInterrupt, Interrupted)):
                    self._check_after_push(outcome, record, in_flight)
            finally:
                record.stamp("push")
                record.save()
        return outcome

    def _upload(self, outcome: Outcome) -> None:
        """Upload exactly the planned paths in one concurrent `aws s3 sync` of the staging folder.

        The staging folder holds only the planned files, as hard links. `aws s3 sync`
        skips a file of the object's size that is not newer than it, so such a file is
        staged as a copy with a fresh time instead. A file that vanished or became
        unreadable since the scan is named as skipped.
        """
        stage = os.path.join(self.staging, "data")
        staged = self._staged = {}  # (a dict: ordered, and asked for each path)
        for path in outcome.plan.transfer:
            source = os.path.join(self.layout.data, path)
            target = names.inside(stage, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                newer_than = _sync_would_skip(source, outcome.remote.get(path))
                if newer_than is None:
                    _link_or_copy(source, target)
                else:
                    fresh = int(max(time.time(), newer_than) + 2) * 10**9
                    _copy_into(source, target, fresh)
            except FileNotFoundError:
                outcome.skipped[path] = "it was deleted or moved while the push ran"
                continue
            except OSError as err:
                outcome.skipped[path] = _why(err)
                continue
            staged[path] = None
        if not staged:
            return
        who = versions.metadata_options(self.pushed_by.result() if self.pushed_by else "")
        args = aws_cli.upload_args(self.settings, [*self.options.cli, *who], root=self.selection.root)
        log.info("Running: %s", aws_cli.describe(args))
        guard = None
        if self.cli.carries_conditions and self.memory.supported(self.settings):
            report_file = os.path.join(self.staging, "guard.jsonl")
            guard = conditions.Guard(self.settings, self._expected(outcome), report_file)
        try:
            self.cli.run(args, self.settings, "push", guard)
        finally:
            if guard is not None:
                self.answers = guard.read()
        if guard is None:
            # The AWS CLI ended well: it uploaded every staged file (each is newer than,
            # or differs in size from, what its listing saw).
            self._all_sent = True
            # It cannot be sure that no push landed between its plan and its upload: say so.
            left = conditions.protection(self.memory, self.settings, self.cli.carries_conditions)
            self.warn(f"This push is {left['mode']}: {left['why']}.")
            return
        found = self.answers
        if found.unsupported:
            code = sorted(found.unsupported.values())[0]
            if self.memory.learn(self.settings, "writes", "unsupported", code):
                self.warn(conditions.unsupported_notice(self.settings, code, "writes"))
            self._upload_again(args, set(found.unsupported))
        elif found.refused:
            self.memory.learn(self.settings, "writes", "enforced")
        elif found.sent:
            self.memory.learn(self.settings, "writes", "accepted")

    def _expected(self, outcome: Outcome) -> dict[str, str | None]:
        """The conditions of the uploads: the ETag of each object the plan saw, None
        where it saw none. (An object listed without an ETag cannot be named.)"""
        expect: dict[str, str | None] = {}
        for path in outcome.plan.transfer:
            seen = outcome.remote.get(path)
            if seen is None:
                expect[path] = None
            elif seen.etag:
                expect[path] = seen.etag
        return expect

    def _upload_again(self, args: list[str], paths: set[str]) -> None:
        """Upload these paths once more without conditions, on a store that rejected them,
        from a staging folder of their own: nothing sent or refused is in it."""
        stage = os.path.join(self.staging, "data")
        again = os.path.join(self.staging, "again")
        for path in sorted(paths):
            target = names.inside(os.path.join(again, "data"), path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _link_or_copy(names.inside(stage, path), target)
        with aws_cli.Cli() as cli:
            cli.prepare(again, self.cli_env, self.cli_concurrency)
            cli.run(args, self.settings, "push")

    def _delete(self, outcome: Outcome) -> None:
        """Delete on S3 what was deleted locally, each object only if it is still the
        version the plan saw: a delete that lost to a concurrent push is a conflict."""
        expect = {path: outcome.remote[path].etag for path in outcome.plan.delete}
        conditional = self.memory.supported(self.settings, "deletes")
        # Until the store has been seen refusing a conditional delete, each object is also
        # checked just before: a store that ignores the conditions would delete any version.
        check_first = self.memory.get(self.settings, "deletes") != "enforced"
        try:
            refused = s3.delete_remote(self.settings, expect, conditional=conditional,
                                       check_first=check_first)
        except s3.ConditionsUnsupported as err:
            if self.memory.learn(self.settings, "deletes", "unsupported", err.code):
                self.warn(conditions.unsupported_notice(self.settings, err.code, "deletes"))
            conditional = False
            refused = s3.delete_remote(self.settings, expect, conditional=False)
        if conditional:
            self.memory.learn(self.settings, "deletes", "enforced" if refused else "accepted")
        for path in refused:
            self._conflict(outcome, path, DELETE_RACED.format(path=names.printable(path)))

    def _check_after_push(self, outcome: Outcome, record: SyncRecord, in_flight) -> None:
        """List S3 again and record what is verified there (uploads, deletions)."""
        plan = outcome.plan
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
            for path in (self.answers.refused if self.answers else ()):
                self._refused(outcome, path)
            if in_flight is None:
                raise
            return  # the error already on its way says more
        for path in plan.transfer:
            self._verify_upload(path, outcome, after.get(path), record)
        for path in plan.delete:
            if path not in after and path not in plan.conflicts:
                record.forget(path)
                outcome.deleted += 1

    def _verify_upload(self, path: str, outcome: Outcome, new, record: SyncRecord) -> None:
        """Record path only if S3 now holds exactly the bytes this push sent."""
        if path in outcome.skipped:
            return  # not uploaded: nothing to record
        guarded = self.answers or conditions.Answers()
        if path in guarded.refused and not (new is not None and new.etag == outcome.content(path)):
            # (S3 holding our bytes: a retried write that had landed, recorded below.)
            planned = outcome.remote.get(path)
            unchanged = (new is None and planned is None) or (
                new is not None and planned is not None and new.etag == planned.etag)
            if unchanged and guarded.refused[path] in ("PreconditionFailed", "412"):
                # Refused, yet S3 still holds what the plan saw: the refusal was wrong.
                outcome.skipped[path] = BOGUS_REFUSAL
                wrongly = "412 on an unchanged object"
                if self.memory.learn(self.settings, "writes", "unsupported", wrongly):
                    self.warn(conditions.unsupported_notice(self.settings, wrongly, "writes"))
                return
            self._refused(outcome, path)
            return
        if new is None:
            if path in guarded.sent or (self._all_sent and path in self._staged):
                self._conflict(outcome, path, GONE_AFTER_UPLOAD.format(path=names.printable(path)))
            return  # else not uploaded: nothing to record
        local = outcome.local[path]
        if new.etag == outcome.content(path) or not s3.etag_is_md5(self.settings, path):
            record.set(path, local, new.etag)
            outcome.sent += 1
            outcome.sent_bytes += new.size
            return
        if _same_object(new, outcome.remote.get(path)):
            return  # not uploaded (the AWS CLI stopped first): nothing to record
        if not _as_scanned(os.path.join(self.layout.data, path), local):
            outcome.skipped[path] = "it changed while the push ran; push again"
        else:
            self._conflict(outcome, path, CONCURRENT_WRITE)

    def _refused(self, outcome: Outcome, path: str) -> None:
        """An upload S3 refused under its condition: someone pushed or deleted it meanwhile."""
        why = DELETED_MEANWHILE if self.answers.refused.get(path) in ("NoSuchKey", "404") else RACED
        self._conflict(outcome, path, why.format(path=names.printable(path)))

    # pull -----------------------------------------------------------------

    def _pull(self) -> Outcome:
        """Download what changed on S3, delete (with `delete`) what was deleted on S3."""
        outcome, record = self._begin()
        if outcome.dryrun:
            return outcome
        received = []
        try:
            for path in outcome.plan.delete:
                if self._remove(outcome, path):
                    record.forget(path)
                    outcome.deleted += 1
            if outcome.plan.transfer and self.as_of is not None:
                self._download_versions(outcome, received)
            elif outcome.plan.transfer:
                self._download(outcome, received)
        finally:
            # Recorded even when the AWS CLI failed part-way: these files are whole.
            for path in received:
                try:
                    st = os.stat(os.path.join(self.layout.data, path))
                except OSError:
                    continue  # gone again already: not recorded
                record.set(path, Local(st.st_size, st.st_mtime_ns, st.st_ino), outcome.remote[path].etag)
                outcome.sent += 1
                outcome.sent_bytes += st.st_size
            record.stamp("pull")
            record.save()
        return outcome

    def _remove(self, outcome: Outcome, path: str) -> bool:
        """Delete a local file S3 no longer has, unless it changed since the scan."""
        try:
            target = names.inside(self.layout.data, path)
            if not _as_scanned(target, outcome.local.get(path)):
                self._conflict(outcome, path, CHANGED_MEANWHILE)
                return False
            os.remove(target)
        except FileNotFoundError:
            pass
        except (names.UnsafePath, OSError) as err:
            outcome.skipped[path] = _why(err)
            return False
        return True

    def _download(self, outcome: Outcome, received: list) -> None:
        """Download exactly the planned paths in one concurrent `aws s3 sync`, appending
        each one moved into data/ to ``received`` (also when the AWS CLI fails part-way).

        No other object is downloaded: see aws_cli.pull_scope for how. A file is
        moved into data/ only if data/ still holds what the scan saw there; files
        that cannot be moved, or did not arrive, are named as skipped.
        """
        paths, remote = outcome.plan.transfer, outcome.remote
        stage = os.path.join(self.staging, "data")
        root = self.selection.root

        def inside_root(found: Iterable[str]) -> list[str]:
            return [path[len(root):] for path in found]

        scope = aws_cli.pull_scope(inside_root(paths), inside_root([*remote, *outcome.others]),
                                   inside_root([*outcome.refused, *outcome.hidden]))
        clashes = {root + path for path in scope.clashes}
        for path in clashes:
            outcome.skipped[path] = CASE_CLASH
        sizes = {**outcome.others, **{path: obj.size for path, obj in remote.items()}}
        for path in scope.placeholders:
            _placeholder(names.inside(stage, root + path), sizes[root + path])
        os.makedirs(os.path.join(stage, root), exist_ok=True)
        # From a folder whose name the AWS CLI's filters cannot misread, kept to root.
        runs_from = aws_cli.plain_root(root)
        options = aws_cli.under_folder(scope.options, root[len(runs_from):])
        args = aws_cli.download_args(self.settings, self.options.cli + options, root=runs_from)
        log.info("Running: %s", aws_cli.describe(args))
        finished = False
        try:
            self.cli.run(args, self.settings, "pull")
            finished = True
        finally:
            self._receive(outcome, [p for p in paths if p not in clashes], received, finished)

    def _receive(self, outcome: Outcome, paths: list[str], received: list, finished: bool) -> None:
        """Move whole downloads from the staging folder into data/, if data/ still holds
        what the scan saw there. A download is written under a temporary name and
        renamed when complete: a file at its own name with the object's size is whole."""
        stage = os.path.join(self.staging, "data")
        for path in paths:
            staged = names.inside(stage, path)
            if not (os.path.isfile(staged) and os.path.getsize(staged) == outcome.remote[path].size):
                if finished:
                    outcome.skipped[path] = "it was not downloaded"
                continue
            try:
                target = names.inside(self.layout.data, path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if _move_into(staged, target, outcome.local.get(path)):
                    received.append(path)
                else:
                    self._conflict(outcome, path, CHANGED_MEANWHILE)
            except (names.UnsafePath, OSError) as err:
                outcome.skipped[path] = _why(err)

    def _as_of(self, scan: Scan) -> None:
        """Make the scan's S3 side the state at --as-of (versions kept by the bucket)."""
        selection = self.selection
        state = versions.state_at(self.settings, selection.root, self.as_of, selection.file)
        folded = names.is_case_insensitive(self.layout.data)
        unsafe = names.refused_keys(state, folded, path_max=_path_max(self.layout))
        then = {path: obj for path, (obj, _) in state.items()
                if selection.covers(path) and not selection.left_out(path)}
        scan.refused = {path: why for path, why in unsafe.items() if path in then}
        scan.remote = {path: obj for path, obj in then.items() if path not in unsafe}
        self.version_ids = {path: state[path][1] for path in scan.remote}

    def _download_versions(self, outcome: Outcome, received: list) -> None:
        """Download the planned versions into the staging folder (in-process, several at
        once), then move them into data/ as a pull does."""
        stage = os.path.join(self.staging, "data")

        stop = threading.Event()

        def fetch(path: str) -> None:
            target = names.inside(stage, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            s3.download_version(self.settings, path, self.version_ids[path], target, stop=stop,
                                etag=outcome.remote[path].etag)

        finished = False
        try:
            _in_daemon_threads(fetch, outcome.plan.transfer, s3.workers(self.settings), stop)
            finished = True
        finally:
            # After Ctrl-C or a failure, the other downloads stop at their next chunk.
            stop.set()
            self._receive(outcome, outcome.plan.transfer, received, finished)

    def _conflict(self, outcome: Outcome, path: str, why: str) -> None:
        outcome.plan.conflicts[path] = why
        self.warn(f"conflict: data/{names.printable(path)} ({why})")


class _Aside:
    """A side question asked in a daemon thread while the run goes on: it never holds up
    an interrupted run or the process's exit."""

    def __init__(self, ask: Callable, *args: object):
        self.answer: object = None
        self.thread = threading.Thread(target=self._ask, args=(ask, *args), daemon=True)
        self.thread.start()

    def _ask(self, ask: Callable, *args: object) -> None:
        try:
            self.answer = ask(*args)
        except Exception:
            self.answer = None  # the run itself says why, if it matters

    def result(self, wait: float = 5) -> object:
        """The answer, or None when it failed or takes longer than ``wait`` seconds more."""
        self.thread.join(wait)
        return self.answer


def _in_daemon_threads(work: Callable[[str], None], paths: list[str], count: int, stop: threading.Event) -> None:
    """work(path) for every path, ``count`` at a time, raising the first failure.

    Daemon threads, so that Ctrl-C or SIGTERM ends the process at once: a request
    waiting on a server that hangs would otherwise hold its exit for the whole read
    timeout, attempt after attempt (about 45 s).
    """
    pending = iter(paths)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set():
            with lock:
                path = next(pending, None)
            if path is None:
                return
            try:
                work(path)
            except BaseException as err:  # noqa: BLE001  handed to the main thread
                failures.append(err)
                stop.set()
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(count, len(paths))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # in slices: Ctrl-C reaches the main thread between them
    if failures:
        raise failures[0]


def _overwrote(outcome: Outcome) -> bool:
    """Did this run replace or delete something that existed before it?"""
    before = outcome.remote if outcome.plan.direction == "push" else outcome.local
    return outcome.deleted > 0 or (outcome.sent > 0 and any(path in before for path in outcome.plan.transfer))


def _same_object(new: Remote, old: Remote | None) -> bool:
    """Is this the very object listed before the push? Any upload gets a new time."""
    if old is None or (new.etag, new.size) != (old.etag, old.size):
        return False
    then, now = s3.seconds(old.last_modified), s3.seconds(new.last_modified)
    if then is None or now is None:
        return old.last_modified == new.last_modified
    # In whole seconds: listings of MinIO and Ceph carry milliseconds, a HEAD's HTTP date none.
    return int(then) == int(now)


def _settle(plan: Plan, local: dict, remote: dict, record: SyncRecord) -> None:
    """Record identical files as the baseline, new times of unchanged files, and forget
    paths deleted on both sides."""
    for path in plan.baseline:
        record.set(path, local[path], remote[path].etag)
    for path in plan.refresh:
        record.set(path, local[path], record.files[path]["etag"])
    for path in plan.forget:
        record.forget(path)


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


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target, follow_symlinks=True)
    except FileNotFoundError:
        raise
    except OSError:  # another file system, or no hard links there
        _copy_into(source, target)


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


def _placeholder(path: str, size: int) -> None:
    """An empty file of this size and an old time, which `aws s3 sync` leaves alone.

    It is sparse (no disk space, nothing written) on Linux and APFS; on NTFS it is
    marked sparse first. HFS+ has no sparse files: there it takes its size on disk.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        if os.name == "nt":
            _mark_sparse(fh.fileno())
        fh.truncate(size)
    os.utime(path, ns=(0, 0))


def _mark_sparse(fd: int) -> None:
    """FSCTL_SET_SPARSE on a Windows file: extending it then allocates nothing."""
    # Windows only: ctypes.windll and msvcrt exist nowhere else.
    import ctypes
    import msvcrt
    from ctypes import wintypes

    returned = wintypes.DWORD()
    ctypes.windll.kernel32.DeviceIoControl(
        wintypes.HANDLE(msvcrt.get_osfhandle(fd)), 0x000900C4, None, 0, None, 0, ctypes.byref(returned), None)


def _as_scanned(path, before) -> bool:
    """Does path still hold what the scan saw there (``before``; None: nothing)?"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return before is None
    return before is not None and (st.st_size, st.st_mtime_ns, st.st_ino) == (before.size, before.mtime_ns, before.ino)


def _move_into(staged, target, before) -> bool:
    """Move a download into data/ unless the file there changed since the scan."""
    if before is None:
        # Nothing was there: a link fails, rather than replaces, if a file appeared.
        try:
            os.link(staged, target)
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            if os.path.lexists(target):
                return False
            _copy_into(staged, target)
        os.unlink(staged)
        return True
    if not _as_scanned(target, before):
        return False
    try:
        os.replace(staged, target)
    except OSError as err:
        if err.errno != errno.EXDEV:  # data/ on another disk than the staging folder
            raise
        _copy_into(staged, target)
    return True


def _copy_into(source, target, mtime_ns: int | None = None) -> None:
    """Copy to a temporary name beside target, then rename: target is whole or not
    there at all, never a part (a full disk, a dying drive). The temporary name is one
    no run syncs (plan.is_our_temporary). ``mtime_ns``: the copy's time, else the source's."""
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX, dir=os.path.dirname(target))
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _why(err) -> str:
    """A short reason for a file that could not be written, moved or removed."""
    if isinstance(err, names.UnsafePath):
        return "its folder in data/ is a link that leads outside data/"
    return (err.strerror or str(err)).lower()


def status(layout: Layout, settings: Settings, selection: Selection = Selection()) -> dict:
    """What a push and a pull would do now, without changing anything."""
    scan = gather(layout, settings, selection=selection)
    _check_path_found(scan, selection, settings)
    local, remote = scan.local, scan.remote
    record = SyncRecord.load(layout, settings)
    as_recorded = scan.as_recorded(record)
    recorded = scan.recorded(record, selection)
    options = {"delete": True, "same": scan.same, "as_recorded": as_recorded, "unreadable": scan.left_alone}
    push_plan = make_plan("push", local, remote, recorded, **options)
    pull_plan = make_plan("pull", local, remote, recorded, **options)

    def side(plan: Plan, target: Mapping) -> dict:
        new = [p for p in plan.transfer if p not in target and p not in record.files]
        return {
            "new": new,
            "changed": [p for p in plan.transfer if p not in new and p not in plan.restored],
            "restored": list(plan.restored),
            "deleted": list(plan.delete),
            "kept": dict(plan.kept),
        }

    return {
        "location": mask_secrets(settings.s3_url),
        "endpoint_url": mask_secrets(settings.endpoint_url) if settings.endpoint_url else None,
        "has_record": record.exists,
        "last_push": record.last.get("push"),
        "last_pull": record.last.get("pull"),
        "push": side(push_plan, remote),
        "pull": side(pull_plan, local),
        "conflicts": dict(push_plan.conflicts),
        "skipped": dict(scan.skipped),
        "refused": dict(scan.refused),
        "unchanged": push_plan.unchanged,
        "left_out": scan.left_out,
        "versioning": {"Enabled": "enabled", "Suspended": "suspended", "": "off"}.get(s3.versioning(settings),
                                                                                    "unknown"),
        "path": f"data/{selection.path}" if selection.path else "data/",
        "protection": conditions.protection(conditions.Memory(layout), settings,
                                            aws_cli.carries_conditions(aws_cli.aws_command())),
    }


