"""Pull: download what changed on S3, delete (with `delete`) what was deleted on S3.

The AWS CLI downloads into a staging folder exactly the planned objects: the
bundled one is told that S3 holds those and no other; for another, every object
that must not be downloaded is left out by include patterns (or, for a large plan
spread over many folders, stood in for by an empty sparse placeholder); whole downloads are then
moved into data/, each only if data/ still holds what the scan saw there. With
``--as-of`` the versions of that moment are downloaded in-process instead (the
AWS CLI cannot sync versions).
"""
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from . import aws_cli, files, lockfile, names, s3, safesync, versions
from .exceptions import ConfigError, SyncError
from .masking import mask_secrets
from .layout import REPLACED_DAYS, prune_replaced, state_folder
from .names import printable
from .plan import Local, Remote, local_moved
from .report import human_bytes
from .safesync import Run
from .threads import in_daemon_threads
from .scan import Scan, path_max

log = logging.getLogger(__name__)

CHANGED_MEANWHILE = "changed locally while the pull ran; left as it is"
TORN = "it changed on S3 while it was downloaded (its parts came from two versions); pull again"
CASE_CLASH = "its name is another object's when case is ignored, as here; rename one of them on S3"


#: Room a pull leaves free beyond its downloads: the disk is never filled to the last byte.
SPARE_BYTES = 64 * 1024 * 1024


def space_problem(needed: int, free: int) -> str | None:
    """Why downloads of ``needed`` bytes do not fit in ``free`` bytes (with room to
    spare), or None. Downloads land in the staging folder before replacing anything, so
    the files they replace free nothing in time."""
    if needed + SPARE_BYTES <= free:
        return None
    return (f"Not enough disk space for this pull: it downloads {human_bytes(needed)} and the disk "
            f"of data/ has {human_bytes(free)} free.")


@dataclass(frozen=True)
class Commit:
    """The lock file a `pull --commit` brings data/ to, and how messages name it."""

    lock: lockfile.Lock
    name: str  # "commit 3f2a9c1" or "the lock in the working tree"


class Pull(Run):
    """Download exactly the planned objects (or their versions at --as-of) into data/."""

    direction = "pull"

    def __init__(self, *args, as_of: versions.AsOf | None = None, commit: "Commit | None" = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.as_of = as_of  # S3's state at a moment (versioned buckets)
        self.commit = commit  # the versions a commit's lock file names
        self.lost: dict[str, str] = {}  # {path: why the version asked for cannot come back}
        self.received: list[str] = []  # moved into data/ whole: recorded
        self.aside: names.Inside | None = None  # where `force` keeps the local edits it replaces
        self.kept_aside: list[str] = []

    def transfer_args(self) -> list[str]:
        return aws_cli.download_args(self.settings, self.flags.cli, root=self.selection.root)

    def uses_cli(self) -> bool:
        return super().uses_cli() and self.as_of is None and self.commit is None

    def _begin(self):
        outcome = super()._begin()
        outcome.skipped.update(self.lost)  # versions a lock names that S3 no longer holds
        return outcome

    def pinned_by(self) -> str:
        """What chose the versions of this pull, as messages name it."""
        return self.commit.name if self.commit is not None else "--as-of"

    def gather(self) -> Scan:
        scan = super().gather()
        if self.as_of is not None:
            self._as_of(scan)
        elif self.commit is not None:
            self._from_lock(scan)
        return scan

    def carry_out(self) -> None:
        outcome, record = self.outcome, self.record
        prune_replaced(self.layout)
        if outcome.plan.transfer:
            # Downloads land in the staging folder, then move into data/ (a copy when data/
            # is another disk): each disk must hold them.
            needed = outcome.plan.transfer_bytes(outcome.local, outcome.remote)
            problem = next(filter(None, (space_problem(needed, shutil.disk_usage(folder).free)
                                         for folder in {self.staging or self.layout.data, self.layout.data})), None)
            if problem:
                raise SyncError(f"{problem} Free some space, or pull a part at a time "
                                "(e.g. `datakit data pull data/raw/`). Nothing was changed.")
        try:
            into_data = names.Inside(self.layout.data)
            for path in outcome.plan.delete:
                if self._remove(path, into_data):
                    record.forget(path)
                    outcome.deleted += 1
                    self.done.add(path)
            if outcome.plan.transfer and (self.as_of is not None or self.commit is not None):
                self._download_versions()
            elif outcome.plan.transfer:
                self._download()
        finally:
            # Recorded even when the AWS CLI failed part-way: these files are whole. The
            # ETag is the one S3 answered the download with (a push may have overtaken the
            # listing), where the engine reports it.
            answered = self.cli.answers.received if self.cli is not None else {}
            for path in self.received:
                try:
                    st = os.stat(os.path.join(self.layout.data, path))
                except OSError:
                    continue  # gone again already: not recorded
                record.set(path, Local(st.st_size, st.st_mtime_ns, st.st_ino),
                           answered.get(path) or outcome.remote[path].etag)
                outcome.sent += 1
                outcome.sent_bytes += st.st_size
                self.done.add(path)
            record.stamp("pull")
            record.save()
            self._remember_rollbacks()
            self._say_kept_aside()

    def _remember_rollbacks(self) -> None:
        """Note the files an --as-of pull brought back (so push can name them); forget
        those any pull since has replaced."""
        before = safesync.rollbacks(self.layout)
        rolled = dict(before)
        if self.as_of is not None or self.commit is not None:
            rolled.update({path: self.record.files[path].etag for path in self.received if path in self.record.files})
        kept = {path: etag for path, etag in rolled.items()
                if path in self.record.files and self.record.files[path].etag == etag}
        if kept != before:
            try:
                files.write_json(self.layout.rolled_back, kept, indent=None)
            except OSError as err:
                log.debug("Could not write %s: %s", self.layout.rolled_back, err)

    def _remove(self, path: str, into_data: names.Inside) -> bool:
        """Delete a local file S3 no longer has, unless it changed since the scan."""
        try:
            target = into_data(path)
            if not files.as_scanned(target, self.outcome.local.get(path)):
                self.conflict(path, CHANGED_MEANWHILE)
                return False
            self._keep_aside(path, target)  # `force delete` of a local edit: kept, as a replaced one is
            os.remove(target)
        except FileNotFoundError:
            pass
        except (names.UnsafePath, OSError) as err:
            self.outcome.skipped[path] = files.why(err)
            return False
        return True

    def _download(self) -> None:
        """Download exactly the planned paths in one concurrent `aws s3 sync`, and move
        each whole one into data/ (also when the AWS CLI fails part-way).

        No other object is downloaded: an AWS CLI with datakit's plugin is told that S3
        holds exactly the planned objects; one without is kept to them by filters and
        placeholders (aws_cli.pull_scope). A file is moved into
        data/ only if data/ still holds what the scan saw there; files that cannot be
        moved, or did not arrive, are named as skipped.
        """
        outcome, scan = self.outcome, self.scan
        paths = outcome.plan.transfer
        stage = os.path.join(self.staging, "data")
        root = self.selection.root
        if self.cli.hooks:
            # Told that S3 holds exactly the planned objects, the AWS CLI downloads
            # those and no other, without listing the folder again.
            wanted = paths
            listing = aws_cli.listing_entries(self.settings, {path: outcome.remote[path] for path in paths})
            runs_from, filters = root, []
        else:
            def inside_root(found: Iterable[str]) -> list[str]:
                return [path[len(root):] for path in found]

            # Every listed object (the run's and the others under root) must be matched
            # by a filter or stood in for: only the planned ones may arrive.
            present = [path for path in scan.listed if path not in scan.unsafe]
            scope = aws_cli.pull_scope(inside_root(paths), inside_root(present), inside_root(scan.unsafe))
            clashes = {root + path for path in scope.clashes}
            for path in clashes:
                outcome.skipped[path] = CASE_CLASH
            into_stage = names.Inside(stage)
            for path in scope.placeholders:
                files.placeholder(into_stage(root + path), scan.listed[root + path].size)
            wanted = [p for p in paths if p not in clashes]
            listing = None
            # From a folder whose name the AWS CLI's filters cannot misread, kept to root.
            runs_from = aws_cli.plain_root(root)
            filters = aws_cli.under_folder(scope.options, root[len(runs_from):])
        os.makedirs(os.path.join(stage, root), exist_ok=True)
        args = aws_cli.download_args(self.settings, self.flags.cli + filters, root=runs_from)
        log.log(self.debug_level, "Running: %s", aws_cli.describe(args))
        shown = self.progress({path: outcome.remote[path].size for path in wanted}, self._download_line)
        # A small pull's "download:" lines are said as each file lands in data/, not when
        # the AWS CLI has it in the staging folder: a move can still fail (a read-only folder).
        self.lines_on_arrival, shown.per_file = shown.per_file, False
        finished = False
        try:
            self.cli.run(args, self.settings, "pull", events=os.path.join(self.staging, "events.jsonl"),
                         listing=listing, progress=shown)
            finished = True
        finally:
            self._receive(wanted, finished)

    def _download_line(self, path: str) -> str:
        shown = names.printable(path)
        return f"download: {mask_secrets(self.settings.s3_url)}{shown} to data/{shown}"

    def _receive(self, paths: list[str], finished: bool) -> None:
        """Move whole downloads from the staging folder into data/, if data/ still holds
        what the scan saw there. A download is written under a temporary name and
        renamed when complete: a file at its own name with the object's size is whole."""
        outcome = self.outcome
        from_stage = names.Inside(os.path.join(self.staging, "data"))
        into_data = names.Inside(self.layout.data)
        torn = self.cli.answers.torn if self.cli is not None else set()
        for path in paths:
            staged = from_stage(path)
            if path in self.lost:
                outcome.skipped[path] = self.lost[path]
                continue
            if path in torn:
                outcome.skipped[path] = TORN
                continue
            if not files.is_file_of_size(staged, outcome.remote[path].size):
                if finished:
                    outcome.skipped[path] = "it was not downloaded"
                continue
            try:
                target = into_data.prepared(path)
                aside = self._keep_aside(path, target)
                if files.move_into(staged, target, outcome.local.get(path)):
                    self.received.append(path)
                    if self.lines_on_arrival:
                        self.say(self._download_line(path))
                else:
                    self._unkeep(aside)
                    self.conflict(path, CHANGED_MEANWHILE)
            except (names.UnsafePath, OSError) as err:
                outcome.skipped[path] = files.why(err)

    def _say_kept_aside(self) -> None:
        if self.kept_aside:
            where = os.path.relpath(self.aside.base, self.layout.root)
            log.warning("Kept your version of %d file(s) this pull replaced or deleted (%s) in %s for %d days: "
                        "copy one back to data/ to have it again.", len(self.kept_aside),
                        ", ".join(f"data/{names.printable(p)}" for p in self.kept_aside[:3])
                        + (" ..." if len(self.kept_aside) > 3 else ""), where, REPLACED_DAYS)

    def _keep_aside(self, path: str, target: str) -> str | None:
        """Before `force` replaces a local edit (a file not as last synced: its content
        may be in no version anywhere), link it under .datakit-data/replaced/; its path."""
        before = self.outcome.local.get(path)
        recorded = self.record.files.get(path)
        if not self.flags.force or before is None or (recorded is not None and not local_moved(before, recorded)):
            return None
        if self.aside is None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"
            self.aside = names.Inside(os.path.join(state_folder(self.layout, self.layout.replaced), stamp, "data"))
        kept = self.aside.prepared(path)
        files.link_or_copy(target, kept)
        self.kept_aside.append(path)
        return kept

    def _unkeep(self, aside: str | None) -> None:
        """The replacement did not happen: the copy kept aside is not needed."""
        if aside is not None:
            os.remove(aside)
            self.kept_aside.pop()

    def _as_of(self, scan: Scan) -> None:
        """Make the scan's S3 side the state at --as-of (versions kept by the bucket)."""
        selection = self.selection
        self._pin(scan, versions.state_at(self.settings, selection.root, self.as_of, selection.file))

    def _from_lock(self, scan: Scan) -> None:
        """Make the scan's S3 side the versions a lock file names (`pull --commit`). An
        entry without a version id is the current object when its ETag is the lock's;
        otherwise, as a version S3 no longer holds, it is named and skipped."""
        lock, settings = self.commit.lock, self.settings
        if (lock.bucket, lock.s3_path) != (settings.bucket, settings.path):
            raise ConfigError(
                f"The lock of {self.commit.name} is for s3://{printable(lock.bucket)}/{printable(lock.s3_path)}, "
                f"not this project's {mask_secrets(settings.s3_url)}: its data cannot be pulled here."
            )
        state = {}
        for path, entry in lock.entries.items():
            current = scan.remote.get(path)
            if entry.version_id or (current is not None and current.etag == entry.etag):
                state[path] = (Remote(entry.size, entry.etag), entry.version_id or None)
            elif self.selection.covers(path) and not self.selection.left_out(path):
                self.lost[path] = (f"the bucket keeps no version of it that {self.commit.name} names "
                                   "(S3 holds other bytes now); it cannot come back")
        self._pin(scan, state)

    def _pin(self, scan: Scan, state: dict) -> None:
        """Make the scan's S3 side these versions ({path: (Remote, version id)})."""
        selection = self.selection
        folded = names.is_case_insensitive(self.layout.data)
        unsafe = names.refused_keys(state, folded, path_max=path_max(self.layout))
        then = {path: obj for path, (obj, _) in state.items()
                if selection.covers(path) and not selection.left_out(path)}
        scan.refused = {path: why for path, why in unsafe.items() if path in then}
        scan.remote = {path: obj for path, obj in then.items() if path not in unsafe}
        self.version_ids = {path: state[path][1] for path in scan.remote}

    def _download_versions(self) -> None:
        """Download the planned versions into the staging folder (in-process, several at
        once), then move them into data/ as a pull does."""
        stage = os.path.join(self.staging, "data")
        stop = threading.Event()
        remote = self.outcome.remote
        into_stage = names.Inside(stage)

        def fetch(path: str) -> None:
            target = into_stage.prepared(path)
            try:
                s3.download_version(self.settings, path, self.version_ids[path], target, stop=stop,
                                    etag=remote[path].etag)
            except SyncError as err:
                if err.kind != "gone":
                    raise
                self.lost[path] = (f"S3 no longer holds the version {self.pinned_by()} names (deleted, or expired "
                                   "by a lifecycle rule); it cannot come back")
                return
            wanted = self.commit.lock.entries.get(path) if self.commit else None
            if wanted is not None and os.path.exists(target) and lockfile.sha256_of(target) != wanted.sha256:
                os.remove(target)  # not the bytes the commit used, whatever the store says
                self.lost[path] = f"S3 sent other bytes than {self.commit.name}'s (their SHA-256 differs); left as it is"

        finished = False
        try:
            in_daemon_threads(fetch, self.outcome.plan.transfer, s3.workers(self.settings), stop)
            finished = True
        finally:
            # After Ctrl-C or a failure, the other downloads stop at their next chunk.
            stop.set()
            self._receive(self.outcome.plan.transfer, finished)
