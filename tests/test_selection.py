"""Choosing what syncs: junk never travels, `exclude` patterns, one path at a time."""
import json
import shutil
import subprocess

import pytest

from helpers import assert_clean_error, ok, output

JUNK = {
    ".DS_Store": "mac", "raw/.DS_Store": "mac", "raw/._a.csv": "apple double",
    "Thumbs.db": "win", "raw/desktop.ini": "win", "~$report.xlsx": "office lock",
    ".~lock.a.csv#": "libreoffice lock", ".ipynb_checkpoints/nb-checkpoint.ipynb": "jupyter",
}


def status(project, *words):
    return json.loads(ok(project.run("data", "status", "--json", *words)).stdout)


def test_junk_never_travels_and_never_conflicts(pair, bucket):
    a, b = pair
    for path, text in JUNK.items():
        a.write(path, f"A's {text}\n")
    a.write("raw/a.csv", "a\n")
    ok(a.run("data", "push"))
    assert set(bucket.objects(a.name)) == {"shared.csv", "raw/a.csv"}

    # Someone else's junk on S3, and B's own junk, differing from it.
    bucket.put(f"{a.name}/.DS_Store", b"other mac")
    bucket.put(f"{a.name}/raw/Thumbs.db", b"other win")
    b.write(".DS_Store", "B's mac\n")
    result = ok(b.run("data", "pull", "delete"))

    assert b.files() == {"shared.csv": a.files()["shared.csv"], "raw/a.csv": b"a\n", ".DS_Store": b"B's mac\n"}
    assert "0 conflict(s)" in result.stdout and "conflict:" not in result.stderr
    ok(b.run("data", "push", "delete"))
    assert bucket.objects(a.name)[".DS_Store"] == b"other mac"  # never deleted either
    assert bucket.objects(a.name)["raw/Thumbs.db"] == b"other win"
    report = status(a)
    assert report["left_out"] == len(JUNK) + 2 and report["conflicts"] == {}
    assert report["push"]["new"] == [] and report["pull"]["new"] == []
    assert "left out (junk or excluded): 10" in ok(a.run("data", "status")).stdout


def test_every_pattern_form(project, bucket):
    project.configure(exclude=["*.tmp", "scratch/", "/top.csv", "drafts/**/old-*", "!keep.tmp"])
    files = ["a.tmp", "d/b.tmp", "keep.tmp", "scratch/x.csv", "d/scratch/y.csv", "top.csv", "d/top.csv",
             "drafts/2024/q/old-1.csv", "drafts/old-2.csv", "drafts/new.csv", "real.csv", "scratch.csv"]
    for path in files:
        project.write(path, path)

    ok(project.run("data", "push"))

    assert set(bucket.objects(project.name)) == {"keep.tmp", "d/top.csv", "drafts/new.csv", "real.csv",
                                                  "scratch.csv"}
    assert status(project)["left_out"] == 7


def test_exclusions_hold_on_both_sides_with_delete(project, colleague, home, bucket):
    home.write_global_config({"exclude": ["*.bak"]})  # a person's own patterns
    project.configure(exclude=["private/"])  # the team's
    project.write("a.csv", "a")
    ok(project.run("data", "push"))
    # Already on S3 before the patterns applied there: stays untouched.
    bucket.put(f"{project.name}/private/old.csv", b"on S3 before")
    bucket.put(f"{project.name}/notes.bak", b"on S3 before")
    project.write("private/mine.csv", "never leaves")
    project.write("a.csv.bak", "never leaves")

    ok(project.run("data", "push", "delete"))
    assert bucket.objects(project.name) == {"a.csv": b"a", "private/old.csv": b"on S3 before",
                                            "notes.bak": b"on S3 before"}

    ok(project.run("data", "pull", "delete"))
    assert project.files() == {"a.csv": b"a", "private/mine.csv": b"never leaves", "a.csv.bak": b"never leaves"}
    colleague.write_config(**project.config())
    ok(colleague.run("data", "pull"))
    assert colleague.files() == {"a.csv": b"a"}


@pytest.mark.parametrize("value, shown", [
    ("[unclosed", None), (42, "42"), (["ok", 7], '["ok", 7]'), (["\\"], "\\"),
])
def test_bad_exclude_values_are_named(project, value, shown):
    project.configure(exclude=value)
    project.write("a.csv", "a")
    if value == "[unclosed":
        # One pattern as a string is allowed; "[unclosed" is a valid (literal) pattern.
        ok(project.run("data", "push"))
        return
    text = assert_clean_error(project.run("data", "push"))
    assert 'config/datakit-data.json: "exclude"' in text and shown in text


def test_one_folder_pushed_and_pulled_leaves_the_rest_alone(pair, bucket):
    a, b = pair
    for i in range(3):
        a.write(f"raw/2024/{i}.csv", f"v1 {i}\n")
        a.write(f"raw/2023/{i}.csv", f"v1 {i}\n")
    a.write("raw/2024.csv", "a file beside the folder\n")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    a.write("raw/2024/0.csv", "v2 0\n")
    a.write("raw/2023/0.csv", "v2 0\n")  # not pushed: outside the path
    (a.data / "raw" / "2024" / "2.csv").unlink()

    pushed = ok(a.run("data", "push", "data/raw/2024", "delete"))
    assert "Push: 1 file(s) sent" in pushed.stdout and "1 deleted" in pushed.stdout
    on_s3 = bucket.objects(a.name)
    assert on_s3["raw/2024/0.csv"] == b"v2 0\n" and "raw/2024/2.csv" not in on_s3
    assert on_s3["raw/2023/0.csv"] == b"v1 0\n" and on_s3["raw/2024.csv"] == b"a file beside the folder\n"
    assert status(a, "data/raw/2024/")["push"] == {"new": [], "changed": [], "restored": [], "deleted": [],
                                                   "kept": {}, "bytes": {}}
    assert status(a)["push"]["changed"] == ["raw/2023/0.csv"]  # the rest is as it was

    pulled = ok(b.run("data", "pull", "data/raw/2024/", "delete"))
    assert "Pull: 1 file(s) received" in pulled.stdout
    assert b.files()["raw/2024/0.csv"] == b"v2 0\n" and "raw/2024/2.csv" not in b.files()
    assert b.files()["raw/2023/0.csv"] == b"v1 0\n"
    ok(b.run("data", "pull", "data/raw/2024.csv"))
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    for side in (a, b):
        report = status(side)
        assert report["push"]["new"] == report["push"]["changed"] == report["push"]["deleted"] == []
        assert report["pull"]["new"] == report["pull"]["changed"] == report["pull"]["deleted"] == []
        assert report["conflicts"] == {}
    assert a.files() == b.files()


def test_one_file_without_delete(pair, bucket):
    a, b = pair
    a.write("x.csv", "x1\n")
    a.write("y.csv", "y1\n")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    a.write("x.csv", "x2 longer\n")
    a.write("y.csv", "y2 longer\n")

    ok(a.run("data", "push", "data/x.csv"))
    assert bucket.objects(a.name)["x.csv"] == b"x2 longer\n" and bucket.objects(a.name)["y.csv"] == b"y1\n"
    ok(b.run("data", "pull", "data/y.csv"))
    assert b.files()["x.csv"] == b"x1\n"  # not asked for
    ok(b.run("data", "pull", "data/x.csv"))
    assert b.files()["x.csv"] == b"x2 longer\n"


@pytest.mark.parametrize("word, says", [
    ("raw/x.csv", '"raw/x.csv" is not inside data/'),
    ("data/../notes.txt", 'a ".." folder name'),
    ("data/nothing/here", "Nothing to sync at data/nothing/here: no file there"),
    ("data/a.csv/", "data/a.csv/ is a file, not a folder"),
    ("data/.DS_Store", "is junk or excluded"),
])
def test_bad_paths_are_named(project, word, says):
    project.configure()
    project.write("a.csv", "a")
    project.write(".DS_Store", "junk")
    for command in (("push", word), ("pull", word, "delete"), ("status", word)):
        text = assert_clean_error(project.run("data", *command))
        assert says in text, text
    # Of several paths, the one that names nothing is named.
    text = assert_clean_error(project.run("data", "push", "data/a.csv", "data/b.csv"))
    assert "Nothing to sync at data/b.csv" in text and "data/a.csv" not in text
    assert "Accepted:" in assert_clean_error(project.run("data", "push", "data"[:3]))  # not a path: a flag word


def test_a_pattern_taken_back_inside_an_excluded_folder_changes_nothing_on_either_side(project, bucket):
    # As in git, a file inside an excluded folder cannot be taken back by "!": the
    # same on S3, in data/ and in the record, so `delete` never acts on it.
    project.configure()
    project.write("scratch/keep.csv", "k")
    project.write("a.csv", "a")
    ok(project.run("data", "push"))
    project.configure(exclude=["scratch/", "!scratch/keep.csv"])

    ok(project.run("data", "push", "delete"))
    ok(project.run("data", "pull", "delete"))

    assert bucket.objects(project.name) == {"scratch/keep.csv": b"k", "a.csv": b"a"}
    assert project.files() == {"scratch/keep.csv": b"k", "a.csv": b"a"}
    assert status(project)["conflicts"] == {}


def test_a_path_through_a_link_follows_the_same_rules_as_a_whole_push(project, bucket, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not data")
    project.configure()
    project.write("x.csv", "x")
    (project.data / "elsewhere").symlink_to(outside)
    (project.data / "self").symlink_to(".")

    unfollowed = project.run("data", "push", "data/elsewhere/", "no-follow-symlinks")
    assert "Nothing to sync at data/elsewhere/" in assert_clean_error(unfollowed)
    looped = project.run("data", "push", "data/self/x.csv")
    assert looped.returncode == 2, output(looped)
    assert "data/self/ (a link to a folder that holds it (a loop))" in looped.stderr

    assert bucket.keys(project.name) == []  # neither the linked folder nor the loop went up
    ok(project.run("data", "push", "./data/x.csv"))  # as some shells complete it
    assert bucket.objects(project.name) == {"x.csv": b"x"}


# exclude follows git's own rules -----------------------------------------------------

GIT_CASES = [
    (["tmp/**", "!tmp/keep"], ["tmp/keep", "tmp/a.txt", "tmp/sub/b.txt", "tmp/sub/keep", "x.txt"]),
    (["*", "!*/", "!*.csv"], ["a.csv", "a.txt", "d/b.csv", "d/b.txt", "d/e/c.csv"]),
    (["*/", "!keep/"], ["top.txt", "keep/a.txt", "drop/a.txt", "keep/sub/b.txt", "drop/keep/c.txt"]),
    (["*.tmp", "!important.tmp"], ["a.tmp", "important.tmp", "d/important.tmp", "d/x.tmp"]),
    (["/root.txt", "logs/", "!logs/keep.log"], ["root.txt", "d/root.txt", "logs/a.log", "logs/keep.log", "d/logs/x"]),
    (["doc/*.txt"], ["doc/a.txt", "doc/sub/b.txt", "x/doc/c.txt"]),
    (["**/build", "!build/keep"], ["build/a", "build/keep", "src/build/b", "x"]),
    (["a/**/b"], ["a/b", "a/x/b", "a/x/y/b", "b"]),
    (["\\!bang", "\\#hash", "trail\\ "], ["!bang", "#hash", "trail ", "trail"]),
    (["[a-c]*.txt", "![b]*"], ["a1.txt", "b1.txt", "d1.txt", "x/c.txt"]),
    (["?.csv", "d?/"], ["a.csv", "ab.csv", "d1/x", "d12/x"]),
    (["/*", "!/keep/", "/keep/*", "!/keep/this"], ["top", "keep/this", "keep/that", "other/x"]),
    (["**"], ["a", "b/c"]),
    (["a/**", "!a/b/"], ["a/x", "a/b/y"]),
    (["# comment", "", "x.txt"], ["x.txt", "# comment", "y"]),
]


@pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")
@pytest.mark.parametrize("patterns, files", GIT_CASES, ids=[" ".join(p) for p, _ in GIT_CASES])
def test_exclude_leaves_out_exactly_what_git_ignores(tmp_path, patterns, files):
    from datakit_data.selection import Selection

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".gitignore").write_text("\n".join(patterns) + "\n")
    listed = subprocess.run(["git", "-C", str(tmp_path), "-c", "core.quotepath=off", "ls-files", "--others",
                             "--ignored", "--exclude-standard", "-z"], capture_output=True, text=True, check=True)
    ignored_by_git = {name for name in listed.stdout.split("\0") if name} - {".gitignore"}

    selection = Selection(patterns=tuple(patterns))
    assert {name for name in files if selection.left_out(name)} == ignored_by_git


def test_a_pattern_typed_in_nfc_leaves_out_the_nfd_name_macos_writes():
    from datakit_data.selection import Selection

    selection = Selection(patterns=("caf\u00e9/", "r\u00e9sum\u00e9.txt"))
    assert selection.left_out("cafe\u0301/menu.txt") and selection.left_out("caf\u00e9/menu.txt")
    assert selection.left_out("notes/re\u0301sume\u0301.txt") and not selection.left_out("cafe/menu.txt")


@pytest.mark.parametrize("path, junk", [
    *[(path, True) for path in JUNK],
    *[(path.upper(), True) for path in JUNK],
    ("a/b/EHTHUMBS.DB", True), ("a/b/Desktop.INI", True), ("raw/~$x", True), ("a/.datakit-data-1f.part", True),
    ("raw/.IPYNB_CHECKPOINTS/a/b.csv", True), (".ipynb_checkpoints/", True), ("._x", True),
    ("raw/x.ds_store", False), ("raw/athumbs.db", False), ("raw/desktop.ini.csv", False), ("a~$b", False),
    ("raw/report.xlsx", False), ("raw/.ipynb_checkpoints.csv", False), ("x.part", False),
])
def test_junk_names_are_told_from_their_neighbours(path, junk):
    from datakit_data.selection import Selection

    assert Selection().left_out(path) is junk
