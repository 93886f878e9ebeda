"""The lock file: each commit knows the exact data it used (issue 32).

Through the real `datakit` and real git, on SeaweedFS with versioning on and off.
"""
import hashlib
import subprocess

import pytest

from helpers import VERSIONED, assert_clean_error, ok

LOCK = "config/datakit-data.lock"


def git(project, *args) -> str:
    done = subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.org", *args],
                          cwd=project.root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def commit(project, message: str) -> str:
    git(project, "add", "-A")
    git(project, "commit", "-qm", message)
    return git(project, "rev-parse", "--short", "HEAD")


def start(project, **config) -> None:
    git(project, "init", "-q")
    (project.root / ".gitignore").write_text("data/\n.datakit-data/\n")
    project.configure(**config)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_commits_lock_pulls_its_exact_bytes_and_back(project, colleague, versioned):
    start(project, s3_bucket=VERSIONED)
    project.write("clean/results.csv", "v1 results\n")
    project.write("raw/survey.csv", "survey\n")
    ok(project.run("data", "push"))
    lock = (project.root / LOCK).read_text()
    assert lock.startswith("# datakit-data lock, format 1")
    line = next(line for line in lock.splitlines() if line.startswith("clean/results.csv\t"))
    path, size, etag, version_id, checksum = line.split("\t")
    assert (size, checksum) == ("11", sha(b"v1 results\n")) and version_id != "-"
    first = commit(project, "story as published")

    project.write("clean/results.csv", "v2 results, corrected\n")
    ok(project.run("data", "push"))
    diff = git(project, "diff", "--stat")
    assert "1 file changed, 1 insertion(+), 1 deletion(-)" in diff  # one line per file: one line changed
    second = commit(project, "corrected")
    assert "lock: data/ matches config/datakit-data.lock" in ok(project.run("data", "status")).stdout

    ok(project.run("data", "pull", "--commit", first))
    assert project.files() == {"clean/results.csv": b"v1 results\n", "raw/survey.csv": b"survey\n"}
    ok(project.run("data", "pull", "--commit", second))
    assert project.files()["clean/results.csv"] == b"v2 results, corrected\n"

    # A colleague's clone at the old commit gets that commit's data.
    subprocess.run(["git", "clone", "-q", str(project.root), str(colleague.root)], check=True, timeout=60)
    subprocess.run(["git", "checkout", "-q", first], cwd=colleague.root, check=True, timeout=60)
    colleague.configure(s3_bucket=VERSIONED, s3_path=project.name)
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=colleague.root, check=False, timeout=60)
    ok(colleague.run("data", "pull", "--commit"))
    assert colleague.files() == {"clean/results.csv": b"v1 results\n", "raw/survey.csv": b"survey\n"}


def test_two_branches_changing_different_files_merge_their_locks_and_the_merge_pulls_exactly(project, versioned):
    start(project, s3_bucket=VERSIONED)
    project.write("a.csv", "a1\n")
    project.write("b.csv", "b1\n")
    ok(project.run("data", "push"))
    commit(project, "base")
    base = git(project, "rev-parse", "--abbrev-ref", "HEAD")

    git(project, "checkout", "-qb", "ana")
    project.write("a.csv", "a2 by ana\n")
    ok(project.run("data", "push"))
    commit(project, "ana's a")
    git(project, "checkout", "-q", base)
    ok(project.run("data", "pull", "--commit"))  # data/ back to the base commit's
    assert project.files() == {"a.csv": b"a1\n", "b.csv": b"b1\n"}
    git(project, "checkout", "-qb", "ben")
    project.write("b.csv", "b2 by ben\n")
    ok(project.run("data", "push", "force", "data/b.csv"))
    commit(project, "ben's b")

    git(project, "merge", "-q", "--no-edit", "ana")  # no conflict in the lock

    merged = (project.root / LOCK).read_text()
    assert "<<<<<<<" not in merged
    ok(project.run("data", "pull", "--commit", "HEAD"))
    assert project.files() == {"a.csv": b"a2 by ana\n", "b.csv": b"b2 by ben\n"}


def test_a_version_that_is_gone_and_an_unversioned_bucket_are_named(project, versioned, bucket):
    start(project, s3_bucket=VERSIONED)
    project.write("kept.csv", "k\n")
    project.write("gone.csv", "g1\n")
    ok(project.run("data", "push"))
    old = commit(project, "old")
    lock_line = next(line for line in (project.root / LOCK).read_text().splitlines() if line.startswith("gone.csv"))
    project.write("gone.csv", "g2\n")
    project.write("kept.csv", "k2\n")
    ok(project.run("data", "push"))
    commit(project, "new")
    versioned.client.delete_object(Bucket=VERSIONED, Key=f"{project.name}/gone.csv", VersionId=lock_line.split("\t")[3])

    pulled = project.run("data", "pull", "--commit", old)

    text = assert_clean_error(pulled, 2)
    assert "data/gone.csv" in text and f"commit {old}" in text and "cannot come back" in text
    assert project.files() == {"kept.csv": b"k\n", "gone.csv": b"g2\n"}  # the rest came back; nothing torn

    other = project.root.parent / f"{project.name}-plain"
    other.mkdir()
    from helpers import Project
    plain = Project(other, project.home)
    start(plain)
    plain.write("x.csv", "x1\n")
    ok(plain.run("data", "push"))
    first = commit(plain, "x1")
    plain.write("x.csv", "x2\n")
    ok(plain.run("data", "push"))
    commit(plain, "x2")
    text = assert_clean_error(plain.run("data", "pull", "--commit", first), 2)
    assert "data/x.csv" in text and "the bucket keeps no version of it" in text
    assert plain.files() == {"x.csv": b"x2\n"}
    assert "lock: data/ matches" in ok(plain.run("data", "status")).stdout


def test_a_lock_with_conflict_markers_is_one_line_that_says_how_to_resolve_it(project, bucket):
    project.configure()
    project.write("a.csv", "a\n")
    ok(project.run("data", "push"))
    path = project.root / LOCK
    lines = path.read_text().splitlines()
    assert lines[3] == "" and lines[4].startswith("a.csv\t")
    path.write_text("\n".join(lines[:3] + ["<<<<<<< HEAD", lines[4], "=======", lines[4].replace("a.csv", "b.csv"),
                                           ">>>>>>> ana", ""]))
    for command in (("status",), ("push",), ("pull",)):
        text = assert_clean_error(project.run("data", *command))
        assert text.count("\n") == 1, text
        assert "config/datakit-data.lock has git's conflict markers (line 4)" in text and "git checkout --ours" in text


@pytest.mark.parametrize("line, says", [
    ("../outside.csv\t1\t0cc175b9c0f1b6a831c399e269772661\t-\t" + "0" * 64, "cannot be a file in data/"),
    ("/etc/passwd\t1\t0cc175b9c0f1b6a831c399e269772661\t-\t" + "0" * 64, "cannot be a file in data/"),
    ("a.csv\t" + "9" * 5000, "longer than 2048 characters"),
    ("a.csv\t1\t0cc175b9c0f1b6a831c399e269772661\tv1;rm -rf\t" + "0" * 64, "is not a version id S3 gives"),
    ("a.csv\t1\t0cc175b9c0f1b6a831c399e269772661\t\x1b[31mred\t" + "0" * 64, "is not a version id S3 gives"),
    ("a.csv\t-1\t0cc175b9c0f1b6a831c399e269772661\t-\t" + "0" * 64, "is not a whole number of bytes"),
    ("a.csv\t1\tnot-an-etag\t-\t" + "0" * 64, "is not an S3 ETag"),
    ("a.csv\t1", "2 tab-separated fields, not 5"),
])
def test_a_hostile_lock_is_refused_by_name_and_line(project, bucket, line, says):
    project.configure()
    project.write("a.csv", "a")
    (project.root / "config").mkdir(exist_ok=True)
    (project.root / LOCK).write_text(
        f"# datakit-data lock, format 1: x\n# bucket: datakit-test\n# s3_path: {project.name}\n{line}\n")
    for command in (("pull", "--commit"), ("status",)):
        text = assert_clean_error(project.run("data", *command))
        assert "config/datakit-data.lock, line 4" in text and says in text, text
        assert "\x1b" not in text
    assert project.files() == {"a.csv": b"a"}
    assert not (project.root.parent / "outside.csv").exists()


def test_status_names_files_that_differ_from_the_lock(project, bucket):
    project.configure()
    project.write("a.csv", "a\n")
    project.write("b.csv", "b\n")
    ok(project.run("data", "push"))
    project.write("a.csv", "A\n")  # same size, other bytes
    (project.data / "b.csv").unlink()
    project.write("c.csv", "new\n")
    status = ok(project.run("data", "status")).stdout
    assert "lock: 3 file(s) in data/ differ from config/datakit-data.lock" in status
    for says in ("data/a.csv (other bytes here)", "data/b.csv (not in data/)", "data/c.csv (not in the lock)"):
        assert says in status


def test_lock_file_false_writes_no_lock(project, bucket):
    project.configure(lock_file=False)
    project.write("a.csv", "a\n")
    ok(project.run("data", "push"))
    assert not (project.root / LOCK).exists()
    assert "lock:" not in ok(project.run("data", "status")).stdout


def test_changing_a_lock_line_by_line_gives_the_lock_written_whole():
    """lockfile.spliced (a run's changed paths only) against lockfile.updated + render."""
    import random

    from datakit_data import lockfile
    from datakit_data.plan import Recorded

    rng = random.Random(5)

    def etag() -> str:
        return "%032x" % rng.getrandbits(128)

    record = {f"d{i % 7}/f{i:03d}.csv": Recorded(i + 1, i, i, etag()) for i in range(300)}
    hashes = {path: "%064x" % rng.getrandbits(256) for path in record}
    old = lockfile.updated(None, "bkt", "p", record, answered={}, hashed=hashes)
    text = lockfile.render("bkt", "p", old.entries)
    for _ in range(20):
        touched = set(rng.sample(sorted(record), 10)) | {f"new/{rng.getrandbits(20)}.csv" for _ in range(3)}
        after = dict(record)
        for path in touched:
            roll = rng.random()
            if roll < 0.3:
                after.pop(path, None)
            elif roll < 0.6 and path in after:
                after[path] = after[path]._replace(mtime_ns=after[path].mtime_ns + 1)  # a new time only
            else:
                after[path] = Recorded(rng.randrange(1, 99), 0, 0, etag())
                hashes[path] = "%064x" % rng.getrandbits(256)
        answered = {path: f"v{rng.getrandbits(30)}" for path in touched if path in after}
        spliced = lockfile.spliced(text, after, touched, answered, hashes.get)
        whole = lockfile.render("bkt", "p", lockfile.updated(lockfile.parse(text), "bkt", "p", after, answered=answered,
                                                              hashed={p: hashes[p] for p in after},
                                                              touched=touched).entries)
        assert (spliced or text) == whole
        text, record = whole, after


def test_status_says_when_lifecycle_rules_expire_old_versions(project, moto):
    from helpers import _client

    client = _client(moto.endpoint_url)
    name = "archive-lifecycle"
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    project.configure(s3_bucket=name, s3_endpoint_url=moto.endpoint_url)
    project.write("a.csv", "a\n")
    ok(project.run("data", "push"))
    assert "archive:" not in ok(project.run("data", "status")).stdout  # no rule: nothing to say

    client.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [
        {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 30}},
        {"ID": "elsewhere", "Status": "Enabled", "Filter": {"Prefix": "other-project/"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
    ]})
    status = ok(project.run("data", "status")).stdout
    assert "archive: a lifecycle rule expires old versions after 30 days" in status


def test_a_partial_pull_and_a_lost_version_keep_the_locks_other_lines_and_crlf_is_read(project, colleague, versioned):
    start(project, s3_bucket=VERSIONED)
    project.write("a.csv", "a\n")
    project.write("b.csv", "b\n")
    ok(project.run("data", "push"))
    lock = (project.root / LOCK).read_text()
    colleague.clone_config_of(project)
    (colleague.root / LOCK).write_text(lock.replace("\n", "\r\n"))  # as git's core.autocrlf checks it out

    ok(colleague.run("data", "pull", "data/a.csv"))

    assert (colleague.root / LOCK).read_text().count("\t") == lock.count("\t")  # b.csv's line kept
    assert "data/b.csv (not in data/)" in ok(colleague.run("data", "status")).stdout
