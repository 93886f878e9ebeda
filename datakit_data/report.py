"""What a run tells the user: plan lines, conflicts, the summary, the exit, the
status report and the history.

Every name printed here came from outside (keys, file names, version ids, who
pushed) and goes through names.printable. Warnings go to the log (stderr).
"""
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

from .conditions import COVERS
from .exceptions import SkippedFiles, SyncError
from .masking import mask_secrets
from .names import printable
from .plan import Local, Plan, Remote

if TYPE_CHECKING:  # only its shape: versions imports nothing of this module
    from .versions import Version

log = logging.getLogger(__name__)

#: Kept and restored files named one by one before "... and N more".
SHOWN_PER_KIND = 20


@dataclass
class Outcome:
    """What a push or pull did, for the summary line and the exit code."""

    plan: Plan
    local: dict[str, Local]
    remote: dict[str, Remote]
    skipped: dict[str, str] = field(default_factory=dict)  # {path in data/: why}
    refused: dict[str, str] = field(default_factory=dict)  # {key under s3_path: why}
    sent: int = 0
    sent_bytes: int = 0
    deleted: int = 0
    seconds: float = 0.0
    dryrun: bool = False


def conflict_line(path: str, why: str) -> str:
    return f"conflict: data/{printable(path)} ({why})"


def name_conflicts_and_kept(plan: Plan) -> None:
    """Name each conflict, and the files kept as they are (a few of each kind)."""
    restored = {path: "deleted locally since the last sync" for path in plan.restored}
    for title, entries in (("conflict", plan.conflicts), ("kept", plan.kept), ("restoring", restored)):
        for i, (path, why) in enumerate(sorted(entries.items())):
            if i == SHOWN_PER_KIND and title != "conflict":
                log.warning("%s: ... and %d more (`datakit data status` lists them all)", title, len(entries) - i)
                break
            who = plan.pushed.get(path) if title == "conflict" else None
            log.warning("%s: data/%s (%s)%s", title, printable(path), why, f"; {who}" if who else "")


def dryrun_lines(plan: Plan, url: str) -> list[str]:
    """What a dryrun would transfer and delete, a line each."""
    pushing = plan.direction == "push"
    lines = [f"(dryrun) upload: data/{path} to {url}{path}" if pushing else f"(dryrun) download: {url}{path} to data/{path}"
             for path in map(printable, plan.transfer)]
    lines += [f"(dryrun) delete: {url if pushing else 'data/'}{path}" for path in map(printable, plan.delete)]
    return lines


def human_bytes(count: int) -> str:
    """1536 -> "1.5 KiB"."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def summary(outcome: Outcome) -> str:
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
        f"{deleted} would be deleted" if outcome.dryrun else f"{deleted} deleted",
        f"{plan.unchanged} unchanged",
        f"{len(plan.conflicts)} conflict(s)",
    ]
    if plan.kept:
        parts.append(f"{len(plan.kept)} kept as they are")
    label = f"{plan.direction.capitalize()}{' (dryrun)' if outcome.dryrun else ''}"
    return f"{label}: {', '.join(parts)}, in {outcome.seconds:.1f} s."


def raise_if_incomplete(outcome: Outcome, url: str) -> None:
    """Raise, for a non-zero exit, when files were skipped or conflicts are left."""
    direction = outcome.plan.direction
    skipped = [f"data/{printable(p)} ({why})" for p, why in sorted(outcome.skipped.items())]
    skipped += [f"{url}{printable(p)} ({why})" for p, why in sorted(outcome.refused.items())]
    if skipped:
        if outcome.refused and outcome.skipped:
            fix = "fix or remove the files in data/, rename or remove the objects on S3,"
        else:
            fix = "rename or remove them on S3" if outcome.refused else "fix or remove them"
        raise SkippedFiles(direction, skipped, fix)
    conflicts = outcome.plan.conflicts
    if conflicts:
        first = sorted(conflicts)[0]
        more = f" and {len(conflicts) - 1} more" if len(conflicts) > 1 else ""
        raise SyncError(
            f"{len(conflicts)} conflict(s) left as they are on both sides (data/{printable(first)}{more}): "
            "nothing of anyone's was overwritten. To settle them, `datakit data compare` saves S3's versions "
            "beside yours; then `datakit data push force PATH` makes yours (or your merge) the latest, or "
            "`datakit data pull force PATH` takes S3's (yours is kept aside)."
        )


#: File lines beyond which status rolls its lists up by folder (about a screenful).
SCREENFUL = 40


def _folder(path: str, root: str) -> str:
    """The folder one level below ``root`` (the folder status looks at) that holds path."""
    rest = path[len(root):] if path.startswith(root) else path
    return root + rest.split("/", 1)[0] + "/" if "/" in rest else root


def _rolled_up(paths: list[str], sizes: Mapping[str, int], root: str = "") -> list[tuple[str, int, int]]:
    """(folder, files, bytes) for each folder one level below root of these paths (root
    itself for the files directly in it)."""
    folders: dict[str, list[int]] = {}
    for path in paths:
        folder = _folder(path, root)
        entry = folders.setdefault(folder, [0, 0])
        entry[0] += 1
        entry[1] += sizes.get(path, 0)
    return [(folder, count, size) for folder, (count, size) in sorted(folders.items())]


def _lock_lines(lock: dict, show) -> list[str]:
    """What status says of data/ against the lock file."""
    name = lock["file"]
    if not lock["exists"]:
        return [f"lock: no {name} yet (the next push or pull writes it; commit it with your code)"]
    if lock.get("other_location"):
        return [f"lock: {name} is for {show(lock['other_location'])}, not this project's location "
                "(the next push or pull writes it anew)"]
    differ = lock["differ"]
    if not differ:
        return [f"lock: data/ matches {name}"]
    lines = [f"lock: {len(differ)} file(s) in data/ differ from {name} "
             "(`datakit data pull --commit` brings data/ to it; a push or pull writes it anew)"]
    shown = sorted(differ.items())
    lines += [f"  data/{show(path)} ({why})" for path, why in shown[:SCREENFUL // 2]]
    if len(shown) > SCREENFUL // 2:
        lines.append(f"  ... and {len(shown) - SCREENFUL // 2} more (`datakit data status --json` lists them)")
    return lines


def status_lines(report: dict, every_file: bool = False) -> list[str]:
    """The status report as text for a person (names with control characters escaped).
    Up to a screenful of files is listed one per line; beyond that (unless
    ``every_file``), each list is rolled up by top-level folder, with counts and bytes."""
    show = printable
    listed = sum(len(report[d][kind]) for d in ("push", "pull") for kind in ("new", "changed", "restored", "deleted",
                                                                         "kept"))
    roll_up = not every_file and listed > SCREENFUL
    looked_at = report.get("path", "data/")
    root = looked_at[len("data/"):] if looked_at.endswith("/") else ""
    lines = [
        f"{report['location']}  last push: {report['last_push'] or 'never'}, "
        f"last pull: {report['last_pull'] or 'never'}"
        + ("" if report["has_record"] else "  (no sync record yet)")
        + (f"  (only {show(report['path'])})" if report.get("path", "data/") != "data/" else "")
    ]
    for direction, verb in (("push", "send"), ("pull", "receive")):
        side = report[direction]
        lines.append(
            f"{direction} would {verb}: {len(side['new'])} new, {len(side['changed'])} changed"
            + (f", {len(side['restored'])} deleted locally" if side["restored"] else "")
            + f"; with `delete` it would delete {len(side['deleted'])}"
        )
        for kind in ("new", "changed", "restored", "deleted"):
            if not roll_up:
                lines += [f"  {kind}: data/{show(p)}" for p in side[kind]]
                continue
            for folder, count, size in _rolled_up(side[kind], side.get("bytes") or {}, root):
                lines.append(f"  {kind}: data/{show(folder)} ({count:,} file{'s' if count != 1 else ''}"
                             + (f", {human_bytes(size)})" if kind != "deleted" else ")"))
        if not roll_up:
            lines += [f"  kept: data/{show(p)} ({why})" for p, why in sorted(side["kept"].items())]
            continue
        reasons: dict[tuple[str, str], int] = {}
        for path, why in side["kept"].items():
            folder = _folder(path, root)
            reasons[(folder, why)] = reasons.get((folder, why), 0) + 1
        lines += [f"  kept: data/{show(folder)} ({count:,} file{'s' if count != 1 else ''}: {why})"
                  for (folder, why), count in sorted(reasons.items())]
    lines.append(f"conflicts: {len(report['conflicts'])}")
    pushed = report.get("conflicts_pushed", {})
    lines += [f"  data/{show(p)} ({why})" + (f"; {show(pushed[p])}" if p in pushed else "")
              for p, why in sorted(report["conflicts"].items())]
    if report["conflicts"]:
        lines.append("  (to settle them: `datakit data compare` saves S3's versions beside yours)")
    lock = report.get("lock")
    if lock is not None:
        lines += _lock_lines(lock, show)
    for kept in report.get("replaced", []):
        lines.append(f"your edits a `pull force` replaced: {kept['files']} file(s) in {show(kept['folder'])}/ "
                     "(kept 30 days)")
    lines += [f"skipped: data/{show(p)} ({why})" for p, why in sorted(report["skipped"].items())]
    lines += [f"skipped on S3: {show(p)} ({why})" for p, why in sorted(report["refused"].items())]
    lines.append(f"unchanged: {report['unchanged']}")
    if report.get("left_out"):
        lines.append(f"left out (junk or excluded): {report['left_out']}")
    lines.append({
        "enabled": "versions: kept by the bucket (`datakit data history` lists them)",
        "suspended": "versions: no longer kept (versioning is suspended): new overwrites cannot be undone",
        "off": "versions: not kept: what a push or pull overwrites or deletes cannot be undone",
    }.get(report.get("versioning"), "versions: unknown (the server does not say whether it keeps them)"))
    if report.get("lock") is not None and report.get("versioning") == "enabled":
        days = report.get("noncurrent_expiry_days")
        if days is None:
            lines.append("archive: the bucket's lifecycle rules could not be read (s3:GetLifecycleConfiguration): "
                         "whether old commits' data stays restorable is unknown")
        elif days:
            lines.append(f"archive: a lifecycle rule expires old versions after {days} days: the data of commits "
                         f"older than that cannot be restored (see docs: archive)")
    for kind, words in COVERS.items():
        protection = (report.get("protection") or {}).get(kind)
        if protection:
            lines.append(f"concurrent pushes, {words}: {protection['mode']}: {protection['why']}")
    unfinished = report.get("unfinished_uploads") or {}
    if unfinished.get("count"):
        lines.append(f"unfinished uploads: {unfinished['count']} ({human_bytes(unfinished['bytes'])} of files), "
                     "continued by the next push of each file left unchanged")
    if roll_up:
        lines.append(f"({listed:,} file lines rolled up by folder: `datakit data status --all` lists each one, "
                     "`datakit data status data/FOLDER/` one folder)")
    return lines


def history_lines(versions: Iterable["Version"], total: int, url: str) -> list[str]:
    """The history as text for a person, newest first."""
    versions = list(versions)
    lines = []
    for v in versions:
        # The time and id as S3 gives them, so that either can be pasted into --as-of.
        what = "deleted" if v.deleted else human_bytes(v.size)
        who = printable(v.pushed_by) or ("-" if v.deleted else "(not pushed by datakit)")
        mark = "  (current)" if v.latest and not v.deleted else ""
        lines.append(f"{printable(v.time)}  {what:>10}  {printable(v.version_id)}  {who}  data/{printable(v.path)}{mark}")
    if not versions:
        lines.append(f"No versions under {mask_secrets(url)} yet.")
    if total > len(versions):
        lines.append(f"... {total - len(versions)} older version(s) not shown (--limit N shows more).")
    return lines


def history_json(versions: Iterable["Version"], total: int) -> str:
    """The history as JSON for scripts."""
    return json.dumps({"versions": [asdict(v) for v in versions], "total": total}, indent=2, sort_keys=True)
