"""Safe push and pull: plan against the sync record, transfer with the AWS CLI.

One listing of the S3 folder, one scan of data/ and the sync record give a plan
(see plan.py). The transfers then run as a single concurrent AWS CLI command:
push runs `aws s3 sync` from a staging folder of hard links to exactly the
planned files (copies with a fresh time where sync would skip them); pull runs
`aws s3 sync` into a staging folder where
every object that must not be downloaded is stood in for by an empty sparse
placeholder, then moves the downloads into data/. The record is updated only
for files that really transferred.
"""
import contextlib
import datetime
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

from . import aws, awsconfig, listing, names
from .exceptions import DatakitDataError, Interrupted, SkippedFiles, SyncError
from .flags import Options
from .lock import STATE_DIR
from .plan import Local, local_etag, make_plan, scan_local
from .record import SyncRecord

log = logging.getLogger(__name__)

DATA = "data"
SHOWN_PER_KIND = 20
#: Files this big say so before they are read to compare their content.
BIG_FILE = 256 * 1024 * 1024


@dataclass
class Outcome:
    """What a push or pull did, for the summary line and the exit code."""

    plan: object
    local: dict
    remote: dict
    skipped: dict
    sent: int = 0
    sent_bytes: int = 0
    deleted: int = 0
    seconds: float = 0.0
    dryrun: bool = False
    refused: dict = field(default_factory=dict)
    content: object = None  # content(path): the local file's ETag, read once


@dataclass
class Scan:
    """data/ and the S3 folder as found: files, objects, and what neither side may use."""

    local: dict
    remote: dict
    skipped: dict  # local files that cannot be pushed: {path: why}
    refused: dict  # objects whose keys cannot be local paths: {path: why}
    same: object  # same(path): identical content on both sides?
    content: object  # content(path): the local file's ETag, computed once

    def as_recorded(self, record):
        """as_recorded(path): does the local file still hold the content recorded for it?"""
        return lambda path: self.content(path) is not None and self.content(path) == record.files[path]["etag"]


def gather(root, settings, flags=Options()) -> Scan:
    """Scan data/ and list S3, setting aside keys that must never become local paths."""
    data_dir = os.path.join(root, DATA)
    local, skipped = scan_local(data_dir, flags.follow_symlinks) if os.path.isdir(data_dir) else ({}, {})
    listed = listing.list_remote(settings, flags.unsigned)
    folded = names.is_case_insensitive(data_dir) if os.path.isdir(data_dir) else False
    refused = names.refused_keys(listed, folded, path_max=_path_max(root))
    remote = {path: obj for path, obj in listed.items() if path not in refused}

    @functools.cache
    def sizes():
        return awsconfig.multipart_sizes(settings)

    @functools.cache
    def content(path):
        """The ETag this file would get on upload (read once per run), or None."""
        size = local[path].size
        if size >= BIG_FILE:
            log.info("Reading data/%s (%s) to compare its content...", names.printable(path), human_bytes(size))
        try:
            return local_etag(os.path.join(data_dir, path), *sizes())
        except OSError:
            return None

    def same(path):
        return content(path) is not None and content(path) == remote[path].etag

    return Scan(local, remote, skipped, refused, same, content)


def _path_max(root) -> int:
    """The longest path below data/ that fits under the staging folder, with room for
    the AWS CLI's temporary suffix."""
    try:
        limit = os.pathconf(root, "PC_PATH_MAX")
    except (OSError, ValueError):
        limit = 4096
    deepest = os.path.join(os.path.abspath(root), STATE_DIR, "pull-4294967296", DATA, "")
    return limit - len(deepest.encode("utf-8")) - 16


def build_plan(root, settings, direction, flags):
    """Scan data/, list S3 and plan one direction: (plan, scan, record)."""
    scan = gather(root, settings, flags)
    record = SyncRecord.load(root, settings)
    plan = make_plan(
        direction, scan.local, scan.remote, record.files,
        delete=flags.delete, force=flags.force, same=scan.same, as_recorded=scan.as_recorded(record),
        unreadable=scan.skipped,
    )
    return plan, scan, record


def remove_stale_staging(root) -> None:
    """Remove staging folders left by runs that were killed (called under the project lock)."""
    state = os.path.join(root, STATE_DIR)
    try:
        entries = os.listdir(state)
    except FileNotFoundError:
        return
    for name in entries:
        kind, _, pid = name.partition("-")
        if kind in ("push", "pull") and pid.isdigit():
            shutil.rmtree(os.path.join(state, name), ignore_errors=True)


def run(direction, root, settings, flags, say, warn) -> Outcome:
    """Push or pull safely, then say one summary line; conflicts and skips raise."""
    started = time.monotonic()
    remove_stale_staging(root)
    with _transfer(root, settings, direction, not flags.dryrun) as (parent, cli):
        work = _push if direction == "push" else _pull
        outcome = work(root, settings, flags, say, warn, parent, cli)
    outcome.seconds = time.monotonic() - started
    say(summary(outcome))
    finish(outcome, direction, aws.mask_secrets(settings.s3_url))
    return outcome


def _push(root, settings, flags, say, warn, parent, cli) -> Outcome:
    """Upload what changed locally, delete (with `delete`) what was deleted locally."""
    outcome, record = _begin("push", root, settings, flags, say, warn)
    plan, local, remote = outcome.plan, outcome.local, outcome.remote
    data_dir = os.path.join(root, DATA)
    hasher = None
    if not outcome.dryrun:
        _settle(plan, local, remote, record)
        try:
            if plan.delete:
                listing.delete_remote(settings, plan.delete, flags.unsigned)
            if plan.transfer:
                # What S3 must hold afterwards, read while the AWS CLI uploads.
                hasher = _Hasher(outcome.content, plan.transfer)
                _upload(root, settings, plan.transfer, remote, flags, parent, cli, outcome.skipped)
        finally:
            in_flight = sys.exc_info()[1]
            try:
                if hasher is not None:
                    hasher.finish()
                # After Ctrl-C or a signal, stop at once: what did arrive is found
                # identical (and recorded) by the next run.
                if (plan.transfer or plan.delete) and not isinstance(in_flight, (KeyboardInterrupt, Interrupted)):
                    _check_after_push(outcome, record, settings, flags, warn, data_dir, in_flight)
            finally:
                record.stamp("push")
                record.save()
    return outcome


def _check_after_push(outcome, record, settings, flags, warn, data_dir, in_flight) -> None:
    """List S3 again and record what is verified there (uploads, deletions)."""
    plan = outcome.plan
    try:
        after = listing.list_remote(settings, flags.unsigned)
    except DatakitDataError:
        if in_flight is None:
            raise
        return  # the error already on its way says more
    for path in plan.transfer:
        _verify_upload(path, outcome, after.get(path), record, settings, warn, data_dir)
    for path in plan.delete:
        if path not in after:
            record.forget(path)
            outcome.deleted += 1


class _Hasher:
    """Reads the files being uploaded (their ETags, cached by content) in a thread."""

    def __init__(self, content, paths):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(content, list(paths)), daemon=True)
        self.thread.start()

    def _run(self, content, paths):
        for path in paths:
            if self.stop.is_set():
                return
            content(path)

    def finish(self):
        """Wait for the reading to end; after a failure, only for the file being read."""
        if sys.exc_info()[0] is not None:
            self.stop.set()
        self.thread.join()


CONCURRENT_WRITE = "S3 holds another version: someone pushed this file while this push ran"


def _verify_upload(path, outcome, new, record, settings, warn, data_dir) -> None:
    """Record path only if S3 now holds exactly the bytes this push sent."""
    old = outcome.remote.get(path)
    if new is None or new == old or path in outcome.skipped:
        return  # not uploaded: nothing to record
    local = outcome.local[path]
    if new.etag == outcome.content(path) or not listing.etag_is_md5(settings, path, new):
        record.set(path, local, new.etag)
        outcome.sent += 1
        outcome.sent_bytes += new.size
        return
    try:
        st = os.stat(os.path.join(data_dir, path))
        moved = (st.st_size, st.st_mtime_ns, st.st_ino) != (local.size, local.mtime_ns, local.ino)
    except OSError:
        moved = True
    if moved:
        outcome.skipped[path] = "it changed while the push ran; push again"
    else:
        outcome.plan.conflicts[path] = CONCURRENT_WRITE
        warn(f"conflict: data/{names.printable(path)} ({CONCURRENT_WRITE})")


def _pull(root, settings, flags, say, warn, parent, cli) -> Outcome:
    """Download what changed on S3, delete (with `delete`) what was deleted on S3."""
    outcome, record = _begin("pull", root, settings, flags, say, warn)
    plan, local, remote = outcome.plan, outcome.local, outcome.remote
    data_dir = os.path.join(root, DATA)
    received = []
    if not outcome.dryrun:
        _settle(plan, local, remote, record)
        try:
            for path in plan.delete:
                try:
                    target = names.inside(data_dir, path)
                    if not _as_scanned(target, local.get(path)):
                        _changed_meanwhile(outcome, path, warn)
                        continue
                    os.remove(target)
                except FileNotFoundError:
                    pass
                except (names.UnsafePath, OSError) as err:
                    outcome.skipped[path] = _why(err)
                    continue
                record.forget(path)
                outcome.deleted += 1
            if plan.transfer:
                _download(root, settings, outcome, flags, parent, cli, warn, received)
        finally:
            # Recorded even when the AWS CLI failed part-way: these files are whole.
            for path in received:
                try:
                    st = os.stat(os.path.join(data_dir, path))
                except OSError:
                    continue  # gone again already: not recorded
                record.set(path, Local(st.st_size, st.st_mtime_ns, st.st_ino), remote[path].etag)
                outcome.sent += 1
                outcome.sent_bytes += st.st_size
            record.stamp("pull")
            record.save()
    return outcome


def _begin(direction, root, settings, flags, say, warn):
    """Plan, name conflicts and kept files, and with `dryrun` show the plan: (outcome, record)."""
    plan, scan, record = build_plan(root, settings, direction, flags)
    # Files pull cannot read locally do not stop it: they are only ever replaced.
    # Objects push cannot pull back are no concern of push.
    outcome = Outcome(
        plan, scan.local, scan.remote, dict(scan.skipped) if direction == "push" else {},
        dryrun=flags.dryrun, refused=scan.refused if direction == "pull" else {}, content=scan.content,
    )
    report(plan, settings, warn)
    url = aws.mask_secrets(settings.s3_url)
    if outcome.dryrun:
        for path in map(names.printable, plan.transfer):
            if direction == "push":
                say(f"(dryrun) upload: data/{path} to {url}{path}")
            else:
                say(f"(dryrun) download: {url}{path} to data/{path}")
        for path in map(names.printable, plan.delete):
            say(f"(dryrun) delete: {url if direction == 'push' else 'data/'}{path}")
    return outcome, record


def _settle(plan, local, remote, record) -> None:
    """Record identical files as the baseline, new times of unchanged files, and forget
    paths deleted on both sides."""
    for path in plan.baseline:
        record.set(path, local[path], remote[path].etag)
    for path in plan.refresh:
        record.set(path, local[path], record.files[path]["etag"])
    for path in plan.forget:
        record.forget(path)


@contextlib.contextmanager
def _transfer(root, settings, direction, needed=True):
    """A staging folder and an AWS CLI process, prepared while the plan is made."""
    if not needed:
        yield None, None
        return
    parent = os.path.join(root, STATE_DIR, f"{direction}-{os.getpid()}")
    shutil.rmtree(parent, ignore_errors=True)
    os.makedirs(os.path.join(parent, DATA))
    try:
        with awsconfig.concurrency(settings) as env, aws.Cli(cwd=parent, env=env) as cli:
            yield parent, cli
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _upload(root, settings, paths, remote, flags, parent, cli, failed) -> None:
    """Upload exactly these paths in one concurrent `aws s3 sync` of a staging folder.

    The staging folder holds only the planned files, as hard links. `aws s3 sync`
    skips a file of the object's size that is not newer than it, so such a file is
    staged as a copy with a fresh time instead. A file that vanished or became
    unreadable since the scan is added to ``failed``.
    """
    stage = os.path.join(parent, DATA)
    staged = 0
    for path in paths:
        source = os.path.join(root, DATA, path)
        target = names.inside(stage, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            newer_than = _sync_would_skip(source, remote.get(path))
            if newer_than is None:
                _link_or_copy(source, target)
            else:
                shutil.copyfile(source, target)
                fresh = int(max(time.time(), newer_than) + 2) * 10**9
                os.utime(target, ns=(fresh, fresh))
        except FileNotFoundError:
            failed[path] = "it was deleted or moved while the push ran"
            continue
        except OSError as err:
            failed[path] = _why(err)
            continue
        staged += 1
    if not staged:
        return
    args = aws.upload_args(settings, flags.cli)
    log.info("Running: %s", aws.describe(args))
    cli.run(args, settings, "push")


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target, follow_symlinks=True)
    except FileNotFoundError:
        raise
    except OSError:  # another file system, or no hard links there
        shutil.copy2(source, target)


def _sync_would_skip(source, obj) -> float | None:
    """The object's time (seconds) when `aws s3 sync` would skip this file (same size,
    not newer than the object), else None."""
    if obj is None:
        return None
    st = os.stat(source)
    if st.st_size != obj.size:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(obj.last_modified.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time() + 86400  # unknown: a time surely after it
    return stamp if st.st_mtime <= stamp + 1 else None


def _download(root, settings, outcome, flags, parent, cli, warn, received) -> None:
    """Download exactly the planned paths in one concurrent `aws s3 sync`, appending
    each one moved into data/ to ``received`` (also when the AWS CLI fails part-way).

    Every other object is stood in for by a placeholder the sync leaves alone;
    refused keys (no placeholder can exist for them) are excluded by name. A file
    is moved into data/ only if data/ still holds what the scan saw there; files
    that cannot be moved, or did not arrive, are named as skipped.
    """
    paths, remote = outcome.plan.transfer, outcome.remote
    stage = os.path.join(parent, DATA)
    data_dir = os.path.join(root, DATA)
    wanted = set(paths)
    for path, obj in remote.items():
        if path in wanted:
            continue
        # Same size and an older time: sync leaves the object alone.
        holder = names.inside(stage, path)
        os.makedirs(os.path.dirname(holder), exist_ok=True)
        with open(holder, "wb") as fh:
            fh.truncate(obj.size)
        os.utime(holder, ns=(0, 0))
    options = flags.cli + aws.exclude_options(outcome.refused)
    args = aws.download_args(settings, options)
    log.info("Running: %s", aws.describe(args))
    finished = False
    try:
        cli.run(args, settings, "pull")
        finished = True
    finally:
        # The AWS CLI writes each download under a temporary name and renames it
        # when complete: a file at its own name with the object's size is whole.
        for path in paths:
            staged = names.inside(stage, path)
            if not (os.path.isfile(staged) and os.path.getsize(staged) == remote[path].size):
                if finished:
                    outcome.skipped[path] = "the AWS CLI did not download it"
                continue
            try:
                target = names.inside(data_dir, path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if _move_into(staged, names.inside(data_dir, path), outcome.local.get(path)):
                    received.append(path)
                else:
                    _changed_meanwhile(outcome, path, warn)
            except (names.UnsafePath, OSError) as err:
                outcome.skipped[path] = _why(err)


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


def _copy_into(staged, target) -> None:
    """Copy to a temporary name beside target, then rename: target is whole or untouched."""
    fd, tmp = tempfile.mkstemp(prefix=".datakit-data-", dir=os.path.dirname(target))
    os.close(fd)
    try:
        shutil.copy2(staged, tmp)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _changed_meanwhile(outcome, path, warn) -> None:
    why = "changed locally while the pull ran; left as it is"
    outcome.plan.conflicts[path] = why
    warn(f"conflict: data/{names.printable(path)} ({why})")


def _why(err) -> str:
    """A short reason for a file that could not be written, moved or removed."""
    if isinstance(err, names.UnsafePath):
        return "its folder in data/ is a link that leads outside data/"
    return (err.strerror or str(err)).lower()


def report(plan, settings, warn) -> None:
    """Name each conflict, and the files kept as they are (a few of each kind)."""
    restored = {path: "deleted locally since the last sync" for path in plan.restored}
    for title, entries in (("conflict", plan.conflicts), ("kept", plan.kept), ("restoring", restored)):
        for i, (path, why) in enumerate(sorted(entries.items())):
            if i == SHOWN_PER_KIND and title != "conflict":
                warn(f"{title}: ... and {len(entries) - i} more (`datakit data status` lists them all)")
                break
            warn(f"{title}: data/{names.printable(path)} ({why})")


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def summary(outcome) -> str:
    """One line: files and bytes moved, deleted, unchanged, conflicts, kept, time."""
    plan = outcome.plan
    verb = "sent" if plan.direction == "push" else "received"
    if outcome.dryrun:
        moved = len(plan.transfer)
        size = plan.transfer_bytes(outcome.local, outcome.remote)
        deleted = len(plan.delete)
        verb = f"would be {verb}"
    else:
        moved, size, deleted = outcome.sent, outcome.sent_bytes, outcome.deleted
    parts = [
        f"{moved} file(s) {verb} ({human_bytes(size)})",
        f"{deleted} deleted",
        f"{plan.unchanged} unchanged",
        f"{len(plan.conflicts)} conflict(s)",
    ]
    if plan.kept:
        parts.append(f"{len(plan.kept)} kept as they are")
    label = f"{plan.direction.capitalize()}{' (dryrun)' if outcome.dryrun else ''}"
    return f"{label}: {', '.join(parts)}, in {outcome.seconds:.1f} s."


def finish(outcome, direction, url) -> None:
    """Turn conflicts and skipped files into a non-zero exit."""
    skipped = [f"data/{names.printable(p)} ({why})" for p, why in sorted(outcome.skipped.items())]
    skipped += [f"{url}{names.printable(p)} ({why})" for p, why in sorted(outcome.refused.items())]
    if skipped:
        fix = "rename or remove them on S3" if outcome.refused else "fix or remove them"
        raise SkippedFiles(
            f"{len(skipped)} file(s) skipped: {'; '.join(skipped)}. The rest went through; "
            f"{fix} and run `datakit data {direction}` again."
        )
    conflicts = outcome.plan.conflicts
    if conflicts:
        first = sorted(conflicts)[0]
        more = f" and {len(conflicts) - 1} more" if len(conflicts) > 1 else ""
        raise SyncError(
            f"{len(conflicts)} conflict(s) left as they are on both sides (data/{names.printable(first)}{more}). "
            f"Keep the version you want: `datakit data {direction} force` makes "
            f"{'yours' if direction == 'push' else 'the S3 version'} win."
        )


def status(root, settings) -> dict:
    """What a push and a pull would do now, without changing anything."""
    scan = gather(root, settings)
    local, remote = scan.local, scan.remote
    record = SyncRecord.load(root, settings)
    as_recorded = scan.as_recorded(record)
    options = {"delete": True, "same": scan.same, "as_recorded": as_recorded, "unreadable": scan.skipped}
    push_plan = make_plan("push", local, remote, record.files, **options)
    pull_plan = make_plan("pull", local, remote, record.files, **options)

    def side(plan, target):
        new = [p for p in plan.transfer if p not in target and p not in record.files]
        return {
            "new": new,
            "changed": [p for p in plan.transfer if p not in new and p not in plan.restored],
            "restored": list(plan.restored),
            "deleted": list(plan.delete),
            "kept": dict(plan.kept),
        }

    return {
        "location": aws.mask_secrets(settings.s3_url),
        "endpoint_url": aws.mask_secrets(settings.endpoint_url) if settings.endpoint_url else None,
        "has_record": record.exists,
        "last_push": record.last.get("push"),
        "last_pull": record.last.get("pull"),
        "push": side(push_plan, remote),
        "pull": side(pull_plan, local),
        "conflicts": dict(push_plan.conflicts),
        "skipped": dict(scan.skipped),
        "refused": dict(scan.refused),
        "unchanged": push_plan.unchanged,
    }


def status_lines(report) -> list[str]:
    """The status report as text for a person (names with control characters escaped)."""
    show = names.printable
    lines = [
        f"{report['location']}  last push: {report['last_push'] or 'never'}, "
        f"last pull: {report['last_pull'] or 'never'}"
        + ("" if report["has_record"] else "  (no sync record yet)")
    ]
    for direction, verb in (("push", "send"), ("pull", "receive")):
        side = report[direction]
        lines.append(
            f"{direction} would {verb}: {len(side['new'])} new, {len(side['changed'])} changed"
            + (f", {len(side['restored'])} deleted locally" if side["restored"] else "")
            + f"; with `delete` it would delete {len(side['deleted'])}"
        )
        for kind in ("new", "changed", "restored", "deleted"):
            lines += [f"  {kind}: data/{show(p)}" for p in side[kind]]
        lines += [f"  kept: data/{show(p)} ({why})" for p, why in sorted(side["kept"].items())]
    lines.append(f"conflicts: {len(report['conflicts'])}")
    lines += [f"  data/{show(p)} ({why})" for p, why in sorted(report["conflicts"].items())]
    lines += [f"skipped: data/{show(p)} ({why})" for p, why in sorted(report["skipped"].items())]
    lines += [f"skipped on S3: {show(p)} ({why})" for p, why in sorted(report["refused"].items())]
    lines.append(f"unchanged: {report['unchanged']}")
    return lines
