"""Safe push and pull: plan against the sync record, transfer with the AWS CLI.

One listing of the S3 folder, one scan of data/ and the sync record give a plan
(scan.py, plan.py). The transfers then run as a single concurrent AWS CLI
command, and the record is updated only for what was verified. A run is one
object: ``Run`` holds what push and pull share (the staging folder and the AWS
CLI process, the plan, conflicts, the record, the summary); push.py and pull.py
hold what each direction does with them. ``status`` asks both plans at once and
changes nothing.
"""
import contextlib
import datetime
import logging
import os
import shutil
import tempfile
import time
from typing import Callable, Iterator, Mapping

from . import awsconfig, claim, compare, conditions, lockfile, progress, report, s3, uploads, versions
from .engine import cli as engine_cli
from .flags import Flags
from .files import write_json
from .layout import STATE, Layout, read_text_map, replaced_edits
from .masking import mask_secrets
from .names import printable
from .plan import Local, local_moved, make_plan
from .progress import Progress
from .record import SyncRecord
from .report import Outcome
from .scan import Scan, check_path_found, gather
from .selection import Selection
from .settings import Settings

log = logging.getLogger(__name__)

#: Transfer logs kept in .datakit-data/logs/ (the newest).
LOGS_KEPT = 5


class Run:
    """One push or pull of a project: plan, transfer, verify, record, report.

    Subclasses say which ``direction`` they are and ``carry_out`` the plan; the run's
    state (scan, record, outcome, staging folder, AWS CLI) lives on the object.
    """

    direction = ""

    def __init__(self, layout: Layout, settings: Settings, *, flags: Flags = Flags(),
                 selection: Selection = Selection(), say: Callable[[str], None] = print):
        self.layout = layout
        self.settings = settings
        self.flags = flags
        self.selection = selection
        self.say = say
        self.scan: Scan | None = None
        self.record: SyncRecord | None = None
        self.outcome: Outcome | None = None
        self.staging: str | None = None  # set while a transfer is prepared
        self.lines_on_arrival = False  # a pull says each small run's file as it lands in data/
        self.cli: engine_cli.Engine | None = None
        self.cli_concurrency: tuple[int, bool] | None = None  # what the AWS CLI is told
        self.done: set[str] = set()  # paths transferred or deleted, and verified
        self.phased = False  # a phase line is on the terminal
        self.shown: Progress | None = None  # what the transfer showed
        self.lock_before: lockfile.Lock | None = None  # config/datakit-data.lock as the run found it
        self.lock_fast = False  # the lock is as this datakit wrote it: change its lines in place
        self.version_ids: dict[str, str] = {}  # pull: the versions downloaded in-process (--as-of, --commit)

    def run(self) -> Outcome:
        """Push or pull safely, then say one summary line; conflicts and skips raise."""
        started = time.monotonic()
        written = None
        with self._transfer():
            outcome = self._begin()
            if not outcome.dryrun:
                try:
                    self.carry_out()
                finally:
                    written = self._transfer_log()
                    compare.forget(self.layout, self.done)
                    self._write_lock()
        outcome.seconds = time.monotonic() - started
        if self.phased:
            progress.clear()
        self.say(report.summary(outcome))
        if written and not self._quiet and not (self.shown and (self.shown.per_file or self.lines_on_arrival)):
            self.say(f"Every file's line: {os.path.relpath(written, self.layout.root)}")
        # Asked only now, and only when it matters: beside the transfer it would be one
        # more connection than max_concurrent_requests allows.
        if (not outcome.dryrun and self._overwrote() and s3.versioning(self.settings) in ("", "Suspended")
                and first_notice(self.layout, f"unversioned {self.settings.s3_url}")):
            log.warning("Bucket %s keeps no versions: what a push or pull overwrites or deletes cannot be undone "
                        "(said once for this project; `datakit data status` says it each time). %s",
                        self.settings.bucket, versions.unversioned_hint(self.settings))
        report.raise_if_incomplete(outcome, mask_secrets(self.settings.s3_url))
        return outcome

    def carry_out(self) -> None:
        """Transfer what the plan says, and record what was verified."""
        raise NotImplementedError

    def transfer_args(self) -> list[str]:
        """The AWS CLI's arguments for this run's transfer, with datakit's plugin."""
        raise NotImplementedError

    @property
    def _quiet(self) -> bool:
        """`quiet` or `only-show-errors`: errors only, as the AWS CLI's words mean."""
        return any(word in self.flags.cli for word in ("--quiet", "--only-show-errors"))

    @property
    def _live(self) -> bool:
        """Is a live line shown (not `quiet`, `only-show-errors` nor `no-progress`)?"""
        return not self._quiet and "--no-progress" not in self.flags.cli

    @property
    def debug_level(self) -> int:
        """The level of what the run says for `debug` (the flag word, or datakit's --debug)."""
        return logging.INFO if "--debug" in self.flags.cli else logging.DEBUG

    def progress(self, sizes: Mapping[str, int], line: Callable[[str], str],
                 part_size: Callable[[int], int] = lambda size: size) -> Progress:
        """What this run shows while its files move (see progress.py): no live line with
        `no-progress`, nothing with `quiet` (errors only, as the AWS CLI's words mean)."""
        self.shown = Progress(self.direction, sizes, self.settings.key_prefix, line=line, every=progress.interval(),
                              live=self._live, per_file=False if self._quiet else None, part_size=part_size)
        return self.shown

    def _transfer_log(self) -> str | None:
        """Write every planned file's line (what, which way, bytes, result) to this run's
        transfer log in .datakit-data/logs/, keeping the last LOGS_KEPT; its path."""
        outcome = self.outcome
        plan = outcome.plan
        if not plan.transfer and not plan.delete:
            return None
        verb, sizes = ("upload", outcome.local) if self.direction == "push" else ("download", outcome.remote)
        lines = []
        for kind, paths in ((verb, plan.transfer), ("delete", plan.delete)):
            for path in paths:
                size = sizes[path].size if kind != "delete" and path in sizes else None
                if path in plan.conflicts:
                    result = f"conflict: {plan.conflicts[path]}"
                elif path in outcome.skipped:
                    result = f"skipped: {outcome.skipped[path]}"
                else:
                    result = "done" if path in self.done else "not done"
                lines.append(f"{kind}\tdata/{printable(path)}\t{'' if size is None else size}\t{printable(result)}")
        folder = os.path.join(self.layout.state, "logs")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = os.path.join(folder, f"{stamp}-{self.direction}-{os.getpid()}.log")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(path, "x", encoding="utf-8") as fh:
                fh.write(f"# datakit data {self.direction}, {mask_secrets(self.settings.s3_url)}, {stamp}\n")
                fh.write("# what\tfile\tbytes\tresult\n")
                fh.write("\n".join(lines) + "\n")
            kept = sorted(name for name in os.listdir(folder) if name.endswith(".log"))
            for old in kept[:-LOGS_KEPT]:
                os.remove(os.path.join(folder, old))
        except OSError as err:
            log.warning("Could not write the transfer log %s: %s", path, err)
            return None
        return path

    def uses_cli(self) -> bool:
        """Does this run transfer through an AWS CLI process?"""
        return not self.flags.dryrun

    def gather(self) -> Scan:
        """This run's scan of data/ and S3."""
        return gather(self.layout, self.settings, self.selection, follow_symlinks=self.flags.follow_symlinks,
                      tidy=True)

    @contextlib.contextmanager
    def _transfer(self) -> Iterator[None]:
        """A staging folder and the engine, prepared while the plan is made."""
        # Started first: it loads awscli while everything else is prepared.
        with engine_cli.open_engine(memory=self.layout.engine) if self.uses_cli() else contextlib.nullcontext() as cli:
            for folder in self.layout.stale_staging():  # left by killed runs; we hold the lock
                shutil.rmtree(folder, ignore_errors=True)
            if self.flags.dryrun:
                yield
                return
            self.staging = self.layout.staging(self.direction)
            os.makedirs(os.path.join(self.staging, "data"))
            try:
                if cli is not None:
                    self.cli_concurrency = awsconfig.concurrency(self.settings)
                    cli.prepare(self.staging, {}, self.cli_concurrency)
                    cli.start(self.transfer_args)  # (where it can: it loads while the plan is made)
                self.cli = cli
                yield
            finally:
                self.cli = None
                shutil.rmtree(self.staging, ignore_errors=True)

    def _phase(self, text: str) -> None:
        """Say what the run is doing, on a terminal, unless asked for no progress."""
        if self._live:
            self.phased = progress.phase(text) or self.phased

    def _begin(self) -> Outcome:
        """Plan, name conflicts and kept files, and with `dryrun` show the plan."""
        self._phase(f"{self.direction.capitalize()}: scanning data/ and listing {mask_secrets(self.settings.s3_url)} ...")
        claim.check_joined(self.settings, self.settings.project_id)  # never another project's data
        scan = self.scan = self.gather()
        self._phase(f"{self.direction.capitalize()}: planning ({len(scan.local):,} files here, "
                    f"{len(scan.remote):,} on S3) ...")
        check_path_found(scan, self.selection, self.settings)
        record = self.record = SyncRecord.load(self.layout, self.settings)
        if self.settings.lock_file:
            # The lock as this datakit last wrote it, in step with the record: changed line
            # by line. Any other is read whole, and a broken one refused before anything moves.
            self.lock_fast = record.exists and lockfile.unchanged(self.layout)
            if not self.lock_fast:
                self.lock_before = lockfile.read(lockfile.lock_path(self.layout))
        plan = make_plan(
            self.direction, scan.local, scan.remote, scan.recorded(record, self.selection),
            delete=self.flags.delete, force=self.flags.force, same=scan.same,
            as_recorded=scan.as_recorded(record), unreadable=scan.left_alone,
        )
        pushing = self.direction == "push"
        if pushing:
            name_rollbacks(self.layout, plan, record.files)
            if self.flags.force:
                compare.held_since_compare(self.layout, plan, scan.remote)
        name_pushers(self.settings, plan, scan.remote)
        # Files pull cannot read locally are kept by the plan; objects push cannot
        # pull back are no concern of push.
        outcome = self.outcome = Outcome(
            plan, scan.local, scan.remote, skipped=dict(scan.skipped) if pushing else {},
            refused={} if pushing else dict(scan.refused), dryrun=self.flags.dryrun,
        )
        if self.phased:  # the plan is made: what it names comes on lines of its own
            progress.clear()
            self.phased = False
        report.name_conflicts_and_kept(plan)
        if outcome.dryrun:
            for line in report.dryrun_lines(plan, mask_secrets(self.settings.s3_url)):
                self.say(line)
        else:
            self._settle()
        return outcome

    def _settle(self) -> None:
        """Record identical files as the baseline, new times of unchanged files, and forget
        paths deleted on both sides."""
        plan, scan, record = self.outcome.plan, self.scan, self.record
        for path in plan.baseline:
            record.set(path, scan.local[path], scan.remote[path].etag)
        for path in plan.refresh:
            record.set(path, scan.local[path], record.files[path].etag)
        for path in plan.forget:
            record.forget(path)

    def _write_lock(self) -> None:
        """Bring config/datakit-data.lock in line with the sync record: entries whose
        file this run changed get S3's answer (ETag, VersionId) and their SHA-256."""
        if not self.settings.lock_file or self.record is None:
            return
        files = self.record.files
        bucket, s3_path = self.settings.bucket, self.settings.path
        answered = dict(self.cli.answers.versions) if self.cli is not None else {}
        answered.update({path: vid for path, vid in self.version_ids.items() if vid})

        def hash_of(path: str) -> str | None:
            """The SHA-256 of a file that is as recorded (None: gone or changed since)."""
            recorded, full = files[path], os.path.join(self.layout.data, path)
            try:
                st = os.stat(full)
                if not local_moved(Local(st.st_size, st.st_mtime_ns, st.st_ino), recorded):
                    return lockfile.sha256_of(full)
            except OSError:
                pass
            return None

        try:
            if self.lock_fast:
                with open(lockfile.lock_path(self.layout), encoding="utf-8") as fh:
                    text = lockfile.spliced(fh.read(), files, self.record.touched, answered, hash_of)
                if text is not None:
                    lockfile.write_text(self.layout, text)
            else:
                hashed = {path: digest for path in lockfile.needing_hash(self.lock_before, bucket, s3_path, files)
                          if (digest := hash_of(path)) is not None}
                lockfile.write(self.layout, lockfile.updated(self.lock_before, bucket, s3_path, files,
                                                                  answered=answered, hashed=hashed,
                                                                  touched=self.record.touched))
            lockfile.remember(self.layout)
        except OSError as err:
            log.warning("Could not write %s: %s. The next push or pull writes it.", lockfile.LOCK,
                        printable(err.strerror or str(err)))

    def conflict(self, path: str, why: str) -> None:
        """A path found in conflict while the run went on: named now, and in the exit."""
        self.outcome.plan.conflicts[path] = why
        log.warning(report.conflict_line(path, why))

    def _overwrote(self) -> bool:
        """Did this run replace or delete something that existed before it?"""
        outcome = self.outcome
        before = outcome.remote if self.direction == "push" else outcome.local
        return outcome.deleted > 0 or (outcome.sent > 0 and any(path in before for path in outcome.plan.transfer))


#: What push says of a file brought back by `pull --as-of` while S3 holds a newer version.
ROLLED_BACK = ("brought back to an older version (pull --as-of or --commit); S3 holds a newer one. "
               "`datakit data push force data/{path}` makes yours the latest")
#: The largest rolled-back.json read (a path and an ETag per file rolled back).
ROLLBACKS_LIMIT = 64 * 1024 * 1024


def rollbacks(layout: Layout) -> dict[str, str]:
    """{path: the ETag of the older version `pull --as-of` brought back}."""
    return read_text_map(layout.rolled_back, ROLLBACKS_LIMIT)


def name_rollbacks(layout: Layout, plan, recorded: Mapping) -> None:
    """A push keeps a file S3 changed since the last sync; when that sync was a
    `pull --as-of` of an older version, say so, and how to make it the latest."""
    if not plan.kept:
        return
    rolled = rollbacks(layout)
    if not rolled:
        return
    for path in plan.kept:
        base = recorded.get(path)
        if base is not None and rolled.get(path) == base.etag:
            plan.kept[path] = ROLLED_BACK.format(path=printable(path))


#: Conflicts whose S3 version is asked who pushed it (a HEAD request each).
PUSHERS_ASKED = 100


def name_pushers(settings: Settings, plan, remote: Mapping) -> None:
    """Who pushed S3's version of each conflict, and when (the first PUSHERS_ASKED)."""
    asked = sorted(path for path in plan.conflicts if path in remote)[:PUSHERS_ASKED]
    names = versions.pushers(settings, [(path, None) for path in asked])
    for path in asked:
        who = names.get((path, None))
        when = versions.when(remote[path].last_modified)
        plan.pushed[path] = (f"S3's version pushed by {printable(who)}, {when}" if who
                             else f"S3's version from {when}, not pushed by datakit")


def _lock_report(layout: Layout, settings: Settings, scan: Scan, record: SyncRecord, selection: Selection) -> dict | None:
    """How data/ stands against config/datakit-data.lock (None when locks are off)."""
    if not settings.lock_file:
        return None
    lock = lockfile.read(lockfile.lock_path(layout))
    if lock is None:
        return {"file": lockfile.LOCK, "exists": False, "differ": {}}
    if (lock.bucket, lock.s3_path) != (settings.bucket, settings.path):
        return {"file": lockfile.LOCK, "exists": True, "other_location": f"s3://{lock.bucket}/{lock.s3_path}", "differ": {}}
    differ = lockfile.differences(lock, scan.local, record.files, layout.data,
                                  covers=lambda path: selection.covers(path) and not selection.left_out(path))
    return {"file": lockfile.LOCK, "exists": True, "differ": differ}


def first_notice(layout: Layout, key: str) -> bool:
    """Is this the first time this project is told ``key``? (Then it is remembered.)"""
    told = read_text_map(layout.notices, 64 * 1024)
    if key in told:
        return False
    told[key] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        os.makedirs(layout.state, exist_ok=True)
        write_json(layout.notices, told)
    except OSError:
        pass  # told again next time
    return True


def status(layout: Layout, settings: Settings, selection: Selection = Selection()) -> dict:
    """What a push and a pull would do now, without changing anything."""
    scan = gather(layout, settings, selection)
    check_path_found(scan, selection, settings)
    local, remote = scan.local, scan.remote
    record = SyncRecord.load(layout, settings)
    recorded = scan.recorded(record, selection)
    asked = {"delete": True, "same": scan.same, "as_recorded": scan.as_recorded(record),
             "unreadable": scan.left_alone}
    push_plan = make_plan("push", local, remote, recorded, **asked)
    pull_plan = make_plan("pull", local, remote, recorded, **asked)
    name_rollbacks(layout, push_plan, recorded)
    name_pushers(settings, push_plan, remote)

    def side(plan, target: Mapping, source: Mapping) -> dict:
        # Sets to look in: 30,000 new files asked of a list took 18-26 s.
        new = [p for p in plan.transfer if p not in target and p not in record.files]
        fresh, restored = set(new), set(plan.restored)
        return {
            "new": new,
            "changed": [p for p in plan.transfer if p not in fresh and p not in restored],
            "restored": list(plan.restored),
            "deleted": list(plan.delete),
            "kept": dict(plan.kept),
            "bytes": {p: source[p].size for p in plan.transfer if p in source},
        }

    return {
        "location": mask_secrets(settings.s3_url),
        "endpoint_url": mask_secrets(settings.endpoint_url) if settings.endpoint_url else None,
        "has_record": record.exists,
        "last_push": record.last.get("push"),
        "last_pull": record.last.get("pull"),
        "push": side(push_plan, remote, local),
        "pull": side(pull_plan, local, remote),
        "conflicts": dict(push_plan.conflicts),
        "conflicts_pushed": dict(push_plan.pushed),
        "lock": (lock := _lock_report(layout, settings, scan, record, selection)),
        "replaced": [{"folder": os.path.join(STATE, "replaced", name), "files": count}
                     for name, count in replaced_edits(layout)],
        "skipped": dict(scan.skipped),
        "refused": dict(scan.refused),
        "unchanged": push_plan.unchanged,
        "left_out": scan.left_out,
        "versioning": (kept := {"Enabled": "enabled", "Suspended": "suspended", "": "off"}.get(
            s3.versioning(settings), "unknown")),
        # Whether a commit's data stays restorable: asked only where locks and versions are kept.
        "noncurrent_expiry_days": s3.noncurrent_expiry(settings) if lock is not None and kept == "enabled" else None,
        "path": f"data/{selection.root}" if len(selection.paths) != 1 else f"data/{selection.paths[0]}",
        "paths": [f"data/{path}" for path in selection.paths] or ["data/"],
        "protection": conditions.protection(conditions.Memory(layout), settings, _without_hooks(layout)),
        "unfinished_uploads": _unfinished(layout, settings),
    }


def _unfinished(layout: Layout, settings: Settings) -> dict:
    """The multipart uploads of ours left on S3 (see uploads.py): how many, their files' bytes."""
    entries = uploads.Journal(layout, settings).read().values()
    return {"count": len(entries), "bytes": sum(entry.size for entry in entries),
            "paths": sorted(entry.path for entry in entries)}


def _without_hooks(layout: Layout) -> str:
    """Why pushes would run without datakit's plugin now ("" when they would not)."""
    with tempfile.TemporaryDirectory(prefix="datakit-data-") as folder:
        return engine_cli.hooks_for_status(folder, layout.engine)[1]
