"""plan.py: the decision table of push and pull."""
import pytest

from datakit_data.plan import Local, Recorded, Remote, make_plan


BASE = {"f": Recorded(size=1, mtime_ns=1, ino=None, etag="e1")}
SAME_LOCAL, NEW_LOCAL = {"f": Local(1, 1)}, {"f": Local(2, 2)}
SAME_REMOTE, NEW_REMOTE = {"f": Remote(1, "e1")}, {"f": Remote(1, "e2")}


@pytest.mark.parametrize("direction, local, remote, flags, expected", [
    ("push", NEW_LOCAL, SAME_REMOTE, {}, ("transfer", None)),
    ("push", SAME_LOCAL, NEW_REMOTE, {}, ("kept", "changed on S3 since the last sync; not overwritten")),
    ("push", SAME_LOCAL, NEW_REMOTE, {"force": True}, ("transfer", None)),
    ("push", NEW_LOCAL, NEW_REMOTE, {}, ("conflicts", "changed on both sides")),
    ("push", {}, SAME_REMOTE, {}, ("kept", "deleted locally; use `delete` to remove it on S3 too")),
    ("push", {}, SAME_REMOTE, {"delete": True}, ("delete", None)),
    ("push", {}, NEW_REMOTE, {"delete": True}, ("conflicts", "deleted locally but changed on S3")),
    ("pull", SAME_LOCAL, NEW_REMOTE, {}, ("transfer", None)),
    ("pull", NEW_LOCAL, SAME_REMOTE, {}, ("kept", "changed locally since the last sync; not overwritten")),
    ("pull", NEW_LOCAL, SAME_REMOTE, {"force": True}, ("kept", "changed locally since the last sync; not overwritten")),
    ("pull", {}, SAME_REMOTE, {"force": True}, ("transfer", None)),
    ("pull", NEW_LOCAL, NEW_REMOTE, {}, ("conflicts", "changed on both sides")),
    ("pull", NEW_LOCAL, NEW_REMOTE, {"force": True}, ("transfer", None)),
    ("pull", SAME_LOCAL, {}, {"delete": True}, ("delete", None)),
    ("pull", NEW_LOCAL, {}, {"delete": True}, ("conflicts", "deleted on S3 but changed locally")),
    ("pull", SAME_LOCAL, SAME_REMOTE, {"delete": True}, ("unchanged", None)),
])
def test_plan_decisions(direction, local, remote, flags, expected):
    plan = make_plan(direction, local, remote, BASE, **flags, same=lambda path: False)
    kind, why = expected
    if kind == "unchanged":
        assert plan.unchanged == 1 and not (plan.transfer or plan.delete or plan.conflicts or plan.kept)
    elif why is None:
        assert getattr(plan, kind) == ["f"]
    else:
        assert getattr(plan, kind) == {"f": why}


def test_identical_content_is_a_baseline_not_a_conflict():
    plan = make_plan("pull", NEW_LOCAL, NEW_REMOTE, BASE, same=lambda path: True)
    assert plan.baseline == ["f"] and not plan.conflicts and not plan.transfer


def test_objects_never_synced_are_kept_by_delete():
    plan = make_plan("push", {}, {"theirs": Remote(1, "x")}, {}, delete=True)
    assert plan.kept == {"theirs": "on S3 only, new there: pull to get it"} and not plan.delete


def test_a_moved_time_with_recorded_content_is_unchanged_and_refreshed():
    record = {"f": Recorded(size=1, mtime_ns=1, ino=7, etag="e1")}
    asked = []

    def as_recorded(path):
        asked.append(path)
        return True

    touched = {"f": Local(1, 99, 7)}
    plan = make_plan("push", touched, {"f": Remote(1, "e1")}, record, as_recorded=as_recorded)
    assert (plan.transfer, plan.unchanged, plan.refresh, asked) == ([], 1, ["f"], ["f"])
    # Same size, time and inode: the content is not read at all.
    asked.clear()
    plan = make_plan("push", {"f": Local(1, 1, 7)}, {"f": Remote(1, "e1")}, record, as_recorded=as_recorded)
    assert (plan.unchanged, plan.refresh, asked) == (1, [], [])
    # Another size: changed, without reading it.
    plan = make_plan("push", {"f": Local(2, 1, 7)}, {"f": Remote(1, "e1")}, record, as_recorded=as_recorded)
    assert (plan.transfer, asked) == (["f"], [])


def test_pull_restores_what_was_deleted_locally_even_when_s3_changed_it():
    record = {"f": Recorded(size=1, mtime_ns=1, ino=None, etag="e1")}
    for remote in ({"f": Remote(1, "e1")}, {"f": Remote(1, "e2")}):
        plan = make_plan("pull", {}, remote, record)
        assert (plan.transfer, plan.restored, plan.conflicts) == (["f"], ["f"], {})
