"""What a push, pull or status run tells the user: plan lines, the summary, the exit.

Every name printed here came from outside (keys, file names) and goes through
names.printable.
"""
from typing import TYPE_CHECKING, Callable

from .exceptions import SkippedFiles, SyncError
from .names import printable
from .plan import Plan

if TYPE_CHECKING:  # safesync imports this module
    from .safesync import Outcome

#: Kept and restored files named one by one before "... and N more".
SHOWN_PER_KIND = 20


def name_conflicts_and_kept(plan: Plan, warn: Callable[[str], None]) -> None:
    """Name each conflict, and the files kept as they are (a few of each kind)."""
    restored = {path: "deleted locally since the last sync" for path in plan.restored}
    for title, entries in (("conflict", plan.conflicts), ("kept", plan.kept), ("restoring", restored)):
        for i, (path, why) in enumerate(sorted(entries.items())):
            if i == SHOWN_PER_KIND and title != "conflict":
                warn(f"{title}: ... and {len(entries) - i} more (`datakit data status` lists them all)")
                break
            warn(f"{title}: data/{printable(path)} ({why})")


def human_bytes(count: int) -> str:
    """1536 -> "1.5 KiB"."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def summary(outcome: "Outcome") -> str:
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


def finish(outcome: "Outcome", direction: str, url: str) -> None:
    """Turn conflicts and skipped files into a non-zero exit."""
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
            f"{len(conflicts)} conflict(s) left as they are on both sides (data/{printable(first)}{more}). "
            f"Keep the version you want: `datakit data {direction} force` makes "
            f"{'yours' if direction == 'push' else 'the S3 version'} win."
        )


def status_lines(report: dict) -> list[str]:
    """The status report as text for a person (names with control characters escaped)."""
    show = printable
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
            lines += [f"  {kind}: data/{show(p)}" for p in side[kind]]
        lines += [f"  kept: data/{show(p)} ({why})" for p, why in sorted(side["kept"].items())]
    lines.append(f"conflicts: {len(report['conflicts'])}")
    lines += [f"  data/{show(p)} ({why})" for p, why in sorted(report["conflicts"].items())]
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
    protection = report.get("protection")
    if protection:
        lines.append(f"concurrent pushes: {protection['mode']}: {protection['why']}")
    return lines
