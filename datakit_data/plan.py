"""Safe-sync planning: what a push or pull may change without losing anyone's work.

Plain `aws s3 sync` compares sizes and times, so it overwrites local edits on pull,
lets a stale copy overwrite a newer object on push, misses same-size edits, and
deletes what a collaborator added. Here each path is judged against the sync
record (what the file was at the last successful push or pull): a side "changed"
when it differs from the record. Only the side that changed since the record may
overwrite the other; a path changed on both sides is a conflict unless the two
are identical, or the user says `force`.
"""
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple


# (slots: a large project holds 100,000 of each, at a third of the memory.)
@dataclass(frozen=True, slots=True)
class Local:
    """A file in data/ as scanned."""

    size: int
    mtime_ns: int
    ino: int = 0


@dataclass(frozen=True, slots=True)
class Remote:
    """An object as listed; its time is kept as the text S3 sent."""

    size: int
    etag: str
    last_modified: str = ""


class Recorded(NamedTuple):
    """A file as it was at its last sync (an entry of the sync record); ``ino`` is
    None where an older record did not keep it."""

    size: int
    mtime_ns: int
    ino: int | None
    etag: str


@dataclass
class Plan:
    """What one push or pull will do; paths are relative to data/."""

    direction: str
    transfer: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    baseline: list[str] = field(default_factory=list)
    unchanged: int = 0
    forget: list[str] = field(default_factory=list)
    refresh: list[str] = field(default_factory=list)  # same content, new time: update the record
    restored: list[str] = field(default_factory=list)  # pull: deleted locally, brought back
    pushed: dict[str, str] = field(default_factory=dict)  # a conflict: who pushed S3's version, and when

    def transfer_bytes(self, local: Mapping[str, Local], remote: Mapping[str, Remote]) -> int:
        """Bytes the transfers will move."""
        side = local if self.direction == "push" else remote
        return sum(side[path].size for path in self.transfer)


def _changed(path, side, record, differs) -> bool:
    """Has this side's copy of path changed since the record (appeared, gone, or differs)?"""
    base = record.get(path)
    now = side.get(path)
    if base is None:
        return now is not None
    return now is None or differs(path, now, base)


def local_moved(now, base) -> bool:
    """Did size, time or inode move since the record? (Content may still be the same.)"""
    return now.size != base.size or now.mtime_ns != base.mtime_ns or (base.ino is not None and now.ino != base.ino)


def _remote_differs(path, now, base) -> bool:
    return now.etag != base.etag


def make_plan(direction: str, local: Mapping[str, Local], remote: Mapping[str, Remote],
              record: Mapping[str, Recorded], *, delete: bool = False, force: bool = False,
              same: Callable[[str], bool] | None = None, as_recorded: Callable[[str], bool] | None = None,
              unreadable: Mapping[str, str] | None = None) -> Plan:
    """Decide, path by path, what a push or pull does.

    ``record`` maps paths to what they were at the last sync (``Recorded``; empty
    when there is none). ``same(path)`` says whether the local file and the
    object have identical content; it is only asked when both sides changed.
    ``as_recorded(path)`` says whether a local file whose time or inode moved (size
    unchanged) still has the recorded content; such a file is unchanged, and its
    path is listed in ``plan.refresh``. ``unreadable`` maps the local paths the scan
    could not look at (``x`` for a file, ``x/`` for a folder; see scan.left_alone) to why:
    what lies there is unknown, so nothing at or below them is restored, overwritten
    or deleted on either side.
    """
    plan = Plan(direction)

    def _local_differs(path, now, base) -> bool:
        if not local_moved(now, base):
            return False
        if now.size == base.size and as_recorded is not None and as_recorded(path):
            plan.refresh.append(path)
            return False
        return True

    source, target = (local, remote) if direction == "push" else (remote, local)
    source_differs, target_differs = (
        (_local_differs, _remote_differs) if direction == "push" else (_remote_differs, _local_differs)
    )
    here, there = ("locally", "on S3") if direction == "push" else ("on S3", "locally")
    hidden = _alone(unreadable or {}) if unreadable else None
    for path in sorted(set(local) | set(remote) | set(record)):
        kept_why = hidden(path) if hidden is not None else None
        if kept_why:
            if path in remote or path in record:
                plan.kept[path] = kept_why
            continue
        # Most paths of a large project: on both sides, as recorded.
        base, mine, theirs = record.get(path), local.get(path), remote.get(path)
        if (base is not None and mine is not None and theirs is not None and theirs.etag == base.etag
                and not local_moved(mine, base)):
            plan.unchanged += 1
            continue
        src_changed = _changed(path, source, record, source_differs)
        dst_changed = _changed(path, target, record, target_differs)
        in_source, in_target = path in source, path in target
        if not in_source and not in_target:
            plan.forget.append(path)  # deleted on both sides
            continue
        if not src_changed and not dst_changed:
            plan.unchanged += 1
            continue
        if direction == "pull" and in_source and not in_target:
            # Deleted locally: bringing S3's copy back loses nothing.
            plan.transfer.append(path)
            if path in record:
                plan.restored.append(path)
            continue
        if src_changed and not dst_changed:
            _source_wins(plan, path, in_source, delete=delete, sides=(here, there))
            continue
        if dst_changed and not src_changed:
            # `force` resolves conflicts. A push may send an unchanged copy over S3's
            # (the second step of an undo), but a pull never replaces a local edit of a
            # file S3 did not change: that edit is in no version anywhere.
            if force and in_source and direction == "push":
                plan.transfer.append(path)
            elif not in_target:
                plan.kept[path] = f"deleted {there} since the last sync; not restored"
            elif not in_source:
                plan.kept[path] = ("on S3 only, new there: pull to get it" if direction == "push"
                                   else "here only, not pushed yet: push to share it")
            else:
                plan.kept[path] = f"changed {there} since the last sync; not overwritten"
            continue
        # Changed on both sides (or new on both): identical content is no conflict.
        if in_source and in_target and same is not None and same(path):
            plan.baseline.append(path)
            plan.unchanged += 1
        elif force:
            _source_wins(plan, path, in_source, delete=delete, sides=(here, there))
        elif not in_source:
            plan.conflicts[path] = f"deleted {here} but changed {there}"
        elif not in_target:
            plan.conflicts[path] = f"changed {here} but deleted {there}"
        else:
            plan.conflicts[path] = "changed on both sides" if record else "differs, and there is no sync record yet"
    return plan


def _alone(kept: Mapping[str, str]) -> Callable[[str], str | None]:
    """why(path): the reason a path is left alone, when it is one of these paths or below
    one. A skipped file may be a link to a folder that is not there (an unplugged
    drive): what was synced under its name is left alone too."""
    folders = {p + "/": why for p, why in kept.items() if not p.endswith("/")}
    folders.update((p, why) for p, why in kept.items() if p.endswith("/"))  # said for the folder itself

    def why(path: str) -> str | None:
        if path in kept:
            return kept[path]
        if not folders:
            return None
        at = path.find("/")
        while at >= 0:
            found = folders.get(path[:at + 1])
            if found:
                return found
            at = path.find("/", at + 1)
        return None
    return why


def _source_wins(plan: Plan, path: str, in_source: bool, *, delete: bool, sides: tuple[str, str]) -> None:
    """The source's state goes across: its copy, or (only with `delete`) its deletion.
    ``sides``: where the source and the target are, as a message says them."""
    here, there = sides
    if in_source:
        plan.transfer.append(path)
    elif delete:
        plan.delete.append(path)
    else:
        plan.kept[path] = f"deleted {here}; use `delete` to remove it {there} too"
