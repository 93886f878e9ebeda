"""History on buckets that keep versions; plain answers on buckets that do not; the
moments of --as-of (versions.py)."""
import datetime
import json
import math
import subprocess
import time

import pytest

from helpers import VERSIONED, assert_clean_error, ok



def test_history_lists_versions_with_who_pushed_them_and_deletions(project, versioned):
    project.configure(s3_bucket=VERSIONED)
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    subprocess.run(["git", "-C", str(project.root), "config", "user.name", "Ana Lyst"], check=True)
    for text in ("one\n", "two, longer\n", "three, longest\n"):
        project.write("story.csv", text)
        ok(project.run("data", "push"))
    project.write("gone.csv", "g")
    ok(project.run("data", "push"))
    _next_second()  # the server's times have whole seconds: keep the two states apart
    (project.data / "gone.csv").unlink()
    ok(project.run("data", "push", "delete"))

    report = json.loads(ok(project.run("data", "history", "data/story.csv", "--json")).stdout)
    sizes = [v["size"] for v in report["versions"]]
    assert sizes == [15, 12, 4] and report["total"] == 3
    assert {v["pushed_by"] for v in report["versions"]} == {"Ana Lyst"}
    assert [v["latest"] for v in report["versions"]] == [True, False, False]

    folder = json.loads(ok(project.run("data", "history", "--json")).stdout)
    gone = [v for v in folder["versions"] if v["path"] == "gone.csv"]
    assert [v["deleted"] for v in gone] == [True, False]
    text = ok(project.run("data", "history", "--limit", "2")).stdout
    assert "deleted" in text and "data/gone.csv" in text and "older version(s) not shown" in text
    assert "versions: kept by the bucket" in ok(project.run("data", "status")).stdout


def test_an_unversioned_bucket_says_so(project, bucket):
    project.configure()
    project.write("a.csv", "a")
    ok(project.run("data", "push"))
    project.write("a.csv", "a, changed")

    pushed = ok(project.run("data", "push"))

    assert "cannot be undone" in pushed.stderr and "put-bucket-versioning" in pushed.stderr
    text = assert_clean_error(project.run("data", "history"))
    assert "keeps no versions" in text and "put-bucket-versioning --bucket datakit-test" in text
    assert "versions: not kept" in ok(project.run("data", "status")).stdout
    quiet = ok(project.run("data", "push"))  # nothing overwritten: nothing to say
    assert "cannot be undone" not in quiet.stderr


def _next_second():
    """Wait for the clock's next whole second (under one second)."""
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.05)


def _history(project, *words):
    return json.loads(ok(project.run("data", "history", "--json", *words)).stdout)["versions"]


def test_pull_as_of_brings_back_each_version_and_a_push_force_undoes(project, versioned):
    project.configure(s3_bucket=VERSIONED)
    contents = ["one\n", "two, longer\n", "three, longest\n"]
    for text in contents:
        project.write("story.csv", text)
        ok(project.run("data", "push"))
    by_size = {len(text): text.encode() for text in contents}
    history = _history(project, "data/story.csv")

    for version in history:  # by version id: exactly that one
        ok(project.run("data", "pull", "data/story.csv", "--as-of", version["version_id"]))
        assert project.files()["story.csv"] == by_size[version["size"]]
    for version in history:  # by time, as the server reports it: the newest at that moment
        ok(project.run("data", "pull", "--as-of", version["time"]))
        newest = max((v for v in history if v["time"] <= version["time"]), key=lambda v: (v["time"], v["latest"]))
        assert project.files()["story.csv"] == by_size[newest["size"]]

    oldest = history[-1]
    ok(project.run("data", "pull", "data/story.csv", "--as-of", oldest["version_id"]))
    report = json.loads(ok(project.run("data", "status", "--json")).stdout)
    assert report["pull"]["changed"] == ["story.csv"]  # differs from S3's current version
    ok(project.run("data", "push", "force"))  # the undo's second step
    assert versioned.objects(project.name)["story.csv"] == b"one\n"


def test_as_of_a_folder_restores_deleted_files_and_removes_later_ones_only_with_delete(project, versioned):
    project.configure(s3_bucket=VERSIONED)
    project.write("keep.csv", "k")
    project.write("gone.csv", "g")
    ok(project.run("data", "push"))
    _next_second()  # the server's times have whole seconds: keep the two states apart
    (project.data / "gone.csv").unlink()
    ok(project.run("data", "push", "delete"))
    project.write("later.csv", "l")
    ok(project.run("data", "push"))
    before_delete = next(v for v in _history(project, "data/gone.csv") if not v["deleted"])["time"]
    # The state right after the first push: both files, and later.csv not yet there.
    deletion_time = next(v for v in _history(project, "data/gone.csv") if v["deleted"])["time"]
    assert before_delete < deletion_time <= _history(project, "data/later.csv")[0]["time"]

    kept = ok(project.run("data", "pull", "--as-of", before_delete))
    assert project.files() == {"keep.csv": b"k", "gone.csv": b"g", "later.csv": b"l"}
    assert "later.csv" in kept.stderr  # named as kept: only with delete

    ok(project.run("data", "pull", "--as-of", before_delete, "delete"))
    assert project.files() == {"keep.csv": b"k", "gone.csv": b"g"}


def test_a_local_edit_survives_as_of_unless_force(project, versioned):
    project.configure(s3_bucket=VERSIONED)
    project.write("story.csv", "v1\n")
    ok(project.run("data", "push"))
    project.write("story.csv", "v2, longer\n")
    ok(project.run("data", "push"))
    first = _history(project, "data/story.csv")[-1]["version_id"]
    project.write("story.csv", "my local edit\n")

    refused = project.run("data", "pull", "data/story.csv", "--as-of", first)
    assert "conflict: data/story.csv" in assert_clean_error(refused)
    assert project.files()["story.csv"] == b"my local edit\n"
    dry = ok(project.run("data", "pull", "data/story.csv", "force", "dryrun", "--as-of", first))
    assert "(dryrun) download" in dry.stdout and project.files()["story.csv"] == b"my local edit\n"
    ok(project.run("data", "pull", "data/story.csv", "force", "--as-of", first))
    assert project.files()["story.csv"] == b"v1\n"


def test_as_of_on_a_bucket_without_versions_and_bad_times(project, bucket):
    project.configure()
    project.write("a.csv", "a")
    ok(project.run("data", "push"))
    text = assert_clean_error(project.run("data", "pull", "--as-of", "2026-01-01"))
    assert "keeps no versions" in text and "put-bucket-versioning" in text
    text = assert_clean_error(project.run("data", "pull", "--as-of", "last tuesday"))
    assert '--as-of "last tuesday" is not a date' in text
    assert project.files() == {"a.csv": b"a"}


# --as-of: moments and versions, tested directly
def test_the_version_current_at_a_moment():
    from datakit_data.versions import choose_at

    def v(path, time, vid, deleted=False, latest=False):
        return {"path": path, "time": time, "version_id": vid, "deleted": deleted, "latest": latest}

    listed = [  # as S3 lists them: versions newest first, deletion markers after
        v("x.csv", "2026-11-14T12:00:30Z", "v2"), v("x.csv", "2026-11-14T12:00:10Z", "v1"),
        v("x.csv", "2026-11-14T12:00:30Z", "gone", deleted=True, latest=True),
        v("y.csv", "2026-11-14T12:00:20Z", "y1", latest=True),
    ]
    moment = datetime.datetime(2026, 11, 14, 12, 0, 15, tzinfo=datetime.timezone.utc).timestamp()
    assert {p: c["version_id"] for p, c in choose_at(listed, moment).items()} == {"x.csv": "v1"}
    later = moment + 60
    # A deletion in the same second as an upload: the current one (the deletion) wins.
    assert {p: c["version_id"] for p, c in choose_at(listed, later).items()} == {"x.csv": "gone", "y.csv": "y1"}


@pytest.mark.parametrize("text, local", [
    ("2026-11-14", datetime.datetime(2026, 11, 14, 23, 59, 59, 999999)),
    ("2026-11-14T15:30", datetime.datetime(2026, 11, 14, 15, 30)),
    ("2026-11-14 15:30:00", datetime.datetime(2026, 11, 14, 15, 30)),
])
def test_as_of_times_are_local_unless_a_zone_is_given(text, local):
    from datakit_data.exceptions import FlagError
    from datakit_data.versions import parse_as_of

    assert parse_as_of(text, False).moment == local.astimezone().timestamp()
    assert parse_as_of("2026-11-14T15:30:00Z", False).moment == datetime.datetime(
        2026, 11, 14, 15, 30, tzinfo=datetime.timezone.utc).timestamp()
    assert parse_as_of("3HLGFqX1.abc", True).version_id == "3HLGFqX1.abc"
    with pytest.raises(FlagError, match="is not a date"):
        parse_as_of("3HLGFqX1.abc", False)  # a version id only with one file


@pytest.mark.parametrize("text, how", [
    ("2026-11-01T01:30", "happens twice here (the clocks went back)"),
    ("2026-03-08T02:30", "never happens here (the clocks went forward)"),
    ("2026-11-01T03:30", None),
])
def test_as_of_a_local_time_that_a_dst_change_makes_ambiguous_is_refused(monkeypatch, text, how):
    import time

    from datakit_data.exceptions import FlagError
    from datakit_data.versions import parse_as_of

    monkeypatch.setenv("TZ", "EST5EDT,M3.2.0,M11.1.0")  # US Eastern, without needing tzdata
    time.tzset()
    try:
        if how is None:
            after = datetime.datetime(2026, 11, 1, 8, 30, tzinfo=datetime.timezone.utc)  # 03:30 EST
            assert parse_as_of(text, False).moment == after.timestamp()
            return
        with pytest.raises(FlagError) as refused:
            parse_as_of(text, False)
        message = str(refused.value)
        assert how in message and f"{text}-04:00" in message and f"{text}-05:00" in message
    finally:
        monkeypatch.undo()
        time.tzset()


def test_history_says_which_versions_another_tool_wrote(project, versioned):
    project.configure(s3_bucket=VERSIONED)
    project.write("story.csv", "one\n")
    ok(project.run("data", "push"))
    versioned.put(f"{project.name}/story.csv", b"two, from another tool\n")

    lines = ok(project.run("data", "history", "data/story.csv")).stdout.splitlines()

    assert "(not pushed by datakit)  data/story.csv  (current)" in lines[0]
    assert "(not pushed by datakit)" not in lines[1] and lines[1].endswith("data/story.csv")
