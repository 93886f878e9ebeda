"""Safe sync: two collaborators on one S3 prefix never silently lose each other's work."""
import json
import os

import pytest

from helpers import AWS_V2, BUCKET, assert_clean_error, ok, output, wait_until


def test_local_edit_survives_a_pull(pair, bucket):
    a, b = pair
    b.write("shared.csv", "B's local edit, newer than the object\n")
    a.write("new-from-a.csv", "new")
    ok(a.run("data", "push"))

    result = ok(b.run("data", "pull"))

    assert b.files() == {"shared.csv": b"B's local edit, newer than the object\n", "new-from-a.csv": b"new"}
    assert "kept: data/shared.csv (changed locally" in result.stderr


def test_same_size_remote_edit_is_pulled(pair):
    a, b = pair
    a.write("shared.csv", "v2,bbbb\n")  # same size as v1
    ok(a.run("data", "push"))

    result = ok(b.run("data", "pull"))

    assert b.files() == {"shared.csv": b"v2,bbbb\n"}
    assert "Pull: 1 file(s) received (8 B), 0 deleted, 0 unchanged, 0 conflict(s)" in result.stdout


def test_stale_unedited_copy_never_replaces_a_newer_object(pair, bucket):
    a, b = pair
    a.write("shared.csv", "v2 from A, a different size\n")
    ok(a.run("data", "push"))

    result = ok(b.run("data", "push"))

    assert bucket.objects(a.name) == {"shared.csv": b"v2 from A, a different size\n"}
    assert "changed on S3 since the last sync; not overwritten" in result.stderr
    assert "Push: 0 file(s) sent" in result.stdout


def test_edits_on_both_sides_are_refused_both_ways_and_force_resolves(pair, bucket):
    a, b = pair
    a.write("shared.csv", "A's version\n")
    a.write("other.csv", "A other\n")
    ok(a.run("data", "push"))
    b.write("shared.csv", "B's version!\n")
    b.write("mine.csv", "B only\n")

    pushed = b.run("data", "push")
    text = assert_clean_error(pushed)
    assert "conflict: data/shared.csv (changed on both sides)" in text and "force" in text
    assert bucket.objects(a.name)["shared.csv"] == b"A's version\n"
    assert bucket.objects(a.name)["mine.csv"] == b"B only\n"  # the rest was pushed

    pulled = b.run("data", "pull")
    text = assert_clean_error(pulled)
    assert "conflict: data/shared.csv" in text
    assert b.files()["shared.csv"] == b"B's version!\n"
    assert b.files()["other.csv"] == b"A other\n"  # the rest was pulled

    ok(b.run("data", "push", "force"))
    assert bucket.objects(a.name)["shared.csv"] == b"B's version!\n"

    a.write("shared.csv", "A again, locally\n")
    assert_clean_error(a.run("data", "pull"))
    ok(a.run("data", "pull", "force"))
    assert a.files()["shared.csv"] == b"B's version!\n"


def test_push_delete_keeps_a_file_the_other_side_added(pair, bucket):
    a, b = pair
    a.write("to-delete.csv", "bye")
    ok(a.run("data", "push"))
    b.write("added-by-b.csv", "b")
    ok(b.run("data", "push"))
    (a.data / "to-delete.csv").unlink()

    result = ok(a.run("data", "push", "delete"))

    remote = bucket.objects(a.name)
    assert "added-by-b.csv" in remote and "to-delete.csv" not in remote  # real deletions propagate
    assert "kept: data/added-by-b.csv (on S3 only, new there: pull to get it)" in result.stderr
    assert "1 deleted" in result.stdout


def test_pull_delete_keeps_a_local_file_never_pushed(pair, bucket):
    a, b = pair
    a.write("gone-soon.csv", "x")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    (a.data / "gone-soon.csv").unlink()
    ok(a.run("data", "push", "delete"))
    b.write("b-draft.csv", "draft")

    result = ok(b.run("data", "pull", "delete"))

    assert set(b.files()) == {"shared.csv", "b-draft.csv"}
    assert "kept: data/b-draft.csv (here only, not pushed yet: push to share it)" in result.stderr


def test_without_a_record_identical_files_are_the_baseline_and_differences_conflict(project, colleague, bucket):
    project.configure()
    project.write("same.csv", "same")
    project.write("differs.csv", "A")
    ok(project.run("data", "push"))
    colleague.configure()
    colleague.write("same.csv", "same")
    colleague.write("differs.csv", "B!")  # e.g. copied by hand before using datakit

    text = assert_clean_error(colleague.run("data", "pull"))

    assert "conflict: data/differs.csv (differs, and there is no sync record yet)" in text
    assert colleague.files() == {"same.csv": b"same", "differs.csv": b"B!"}
    ok(colleague.run("data", "pull", "force"))
    assert colleague.files() == {"same.csv": b"same", "differs.csv": b"A"}
    result = ok(colleague.run("data", "push"))
    assert "0 file(s) sent" in result.stdout and "2 unchanged" in result.stdout


def test_dryrun_shows_the_plan_and_changes_nothing(pair, bucket):
    a, b = pair
    a.write("shared.csv", "A edit\n")
    ok(a.run("data", "push"))
    b.write("shared.csv", "B edit\n")
    b.write("new.csv", "n")
    record = (b.root / ".datakit-data" / "record.json").read_bytes()

    result = b.run("data", "push", "dryrun")

    text = assert_clean_error(result)
    assert "(dryrun) upload: data/new.csv" in result.stdout
    assert "conflict: data/shared.csv" in text
    assert "Push (dryrun): 1 file(s) would be sent" in result.stdout
    assert set(bucket.objects(a.name)) == {"shared.csv"}
    assert (b.root / ".datakit-data" / "record.json").read_bytes() == record


def test_status_reports_each_state_and_changes_nothing(pair, bucket):
    a, b = pair
    a.write("remote-new.csv", "r")
    a.write("shared.csv", "A edit\n")
    a.write("gone.csv", "g")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    a.write("remote-new-2.csv", "r2")
    a.write("shared.csv", "A edits again\n")
    (a.data / "gone.csv").unlink()
    ok(a.run("data", "push", "delete"))
    b.write("local-new.csv", "l")
    b.write("remote-new.csv", "B changed this")
    b.write("shared.csv", "B edits too\n")
    before = b.files()

    result = ok(b.run("data", "status", "--json"))

    report = json.loads(result.stdout)
    assert report["pull"]["new"] == ["remote-new-2.csv"]
    assert report["pull"]["deleted"] == ["gone.csv"]
    assert report["push"]["new"] == ["local-new.csv"]
    assert report["push"]["changed"] == ["remote-new.csv"]
    assert report["conflicts"] == {"shared.csv": "changed on both sides"}
    assert report["last_pull"] and report["last_push"] is None
    assert b.files() == before

    text = ok(b.run("data", "status")).stdout
    assert "push would send: 1 new, 1 changed" in text and "pull would receive: 1 new" in text
    assert "data/shared.csv (changed on both sides)" in text and "last push: never" in text


def test_init_refuses_an_s3_path_that_holds_data_unless_joining(project, bucket):
    bucket.put(f"{project.name}/someone-elses.csv", b"theirs")
    args = ("data", "init", "--bucket", BUCKET, "--endpoint-url", project.home.endpoint_url)

    text = assert_clean_error(project.run(*args))

    assert f"s3://{BUCKET}/{project.name}/ already holds data" in text and "--existing" in text
    assert not project.config_path.exists()
    ok(project.run(*args, "--existing"))
    assert project.config()["s3_path"] == project.name


def test_init_that_cannot_check_says_so_and_goes_on(project):
    result = ok(project.run("data", "init", "--bucket", BUCKET, "--endpoint-url", "http://127.0.0.1:9"))

    assert "Could not check whether" in result.stdout
    assert project.config()["s3_bucket"] == BUCKET


def test_a_copied_project_has_nothing_to_push(project, tmp_path, bucket):
    import shutil

    project.configure()
    for i in range(50):
        project.write(f"part/{i:02d}.csv", f"{i},row\n" * 20)
    ok(project.run("data", "push"))
    copy = project.__class__(tmp_path / "copy" / project.name, project.home)
    shutil.copytree(project.root, copy.root, dirs_exist_ok=True)  # new inodes and, for data/, new times (cp -r)
    for path in copy.data.rglob("*.csv"):
        os.utime(path, ns=(path.stat().st_mtime_ns + 10**9, path.stat().st_mtime_ns + 10**9))

    status = ok(copy.run("data", "status"))
    pushed = ok(copy.run("data", "push"))
    again = ok(copy.run("data", "push"))

    assert "push would send: 0 new, 0 changed" in status.stdout
    assert "Push: 0 file(s) sent (0 B), 0 deleted, 50 unchanged" in pushed.stdout
    assert "Push: 0 file(s) sent (0 B), 0 deleted, 50 unchanged" in again.stdout


def test_a_touched_file_takes_a_colleagues_edit_on_pull(pair):
    a, b = pair
    shared = b.data / "shared.csv"
    os.utime(shared, ns=(shared.stat().st_mtime_ns + 5 * 10**9,) * 2)  # a tool touched it
    a.write("shared.csv", "A's real edit\n")
    ok(a.run("data", "push"))

    result = ok(b.run("data", "pull"))

    assert b.files() == {"shared.csv": b"A's real edit\n"}
    assert "1 file(s) received" in result.stdout and "0 conflict(s)" in result.stdout


def test_pull_restores_a_file_deleted_locally(pair):
    a, b = pair
    b.write("other.csv", "B's other file\n")
    ok(b.run("data", "push"))
    (b.data / "shared.csv").unlink()

    status = ok(b.run("data", "status"))
    result = ok(b.run("data", "pull"))

    assert "pull would receive: 0 new, 0 changed, 1 deleted locally" in status.stdout
    assert "  restored: data/shared.csv" in status.stdout
    assert "restoring: data/shared.csv (deleted locally since the last sync)" in result.stderr
    assert b.files() == {"shared.csv": b"v1,aaaa\n", "other.csv": b"B's other file\n"}


GATED_AWS = """#!PYTHON
# The AWS CLI, held at two points the test opens: once datakit has planned (before the
# CLI sends anything), and before datakit sees it end (so that datakit's check of S3
# comes when the test says). datakit starts a CLI that takes its plugin early and sends
# it the rest of its setup once it has planned (on stdin): that line is held. One that
# does not take the plugin is started once datakit has planned: it is held before it starts.
import os, subprocess, sys, threading, time
gate, who, aws, args = os.environ["GATE"], os.environ["WHO"], os.environ["AWS"].split(), sys.argv[1:]

def wait(name):
    while not os.path.exists(os.path.join(gate, name)):
        time.sleep(0.02)

def touch(name):
    open(os.path.join(gate, name), "w").close()

if args[:1] == ["--version"]:
    os.execvp(aws[0], aws + args)
if "--datakit-data-run" in args:
    proc = subprocess.Popen(aws + args, stdin=subprocess.PIPE, text=True)
    got = []
    threading.Thread(target=lambda: got.append(sys.stdin.readline()), daemon=True).start()
    while not got:
        if proc.poll() is not None:  # it refused the option: datakit starts another
            sys.exit(proc.returncode)
        time.sleep(0.02)
    line = got[0]
    touch("ready-" + who)
    wait("go-" + who)
    proc.stdin.write(line)
    proc.stdin.flush()
    def forward():
        sys.stdin.read()
        proc.stdin.close()
    threading.Thread(target=forward, daemon=True).start()
else:
    touch("ready-" + who)
    wait("go-" + who)
    proc = subprocess.Popen(aws + args, stdin=subprocess.DEVNULL)
code = proc.wait()
touch("sent-" + who)
wait("end-" + who)
sys.exit(code)
"""


@pytest.mark.parametrize("aws", ["v1 without the plugin", "v2"])
def test_of_two_concurrent_pushes_through_another_aws_cli_neither_edit_is_lost(pair, bucket, tmp_path, aws):
    # Both plan against the same S3 state; A's upload lands first, then B's. AWS CLI v2
    # carries datakit's plugin: B's upload names the version it planned against and S3
    # refuses it. An AWS CLI that cannot load the plugin (v1 run as another CLI): the
    # check after upload is what finds that B's push landed over A's, and A is told.
    import stat as stat_module
    import sys

    if aws == "v2" and not AWS_V2:
        pytest.skip("no AWS CLI v2 at /usr/bin/aws (Debian's awscli package; .ci/run installs it)")
    command = AWS_V2 if aws == "v2" else f"{sys.executable} -m awscli"
    a, b = pair
    gate = tmp_path / "gate"
    gate.mkdir()
    wrapper = tmp_path / "gated-aws"
    wrapper.write_text(GATED_AWS.replace("PYTHON", sys.executable, 1))
    wrapper.chmod(wrapper.stat().st_mode | stat_module.S_IXUSR)
    big = os.urandom(9 * 1024 * 1024)  # a multipart upload
    a.write("big.bin", big)
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    a.write("shared.csv", "v2,A's!\n")
    b.write("shared.csv", "v2,B's edit\n")
    a.write("big.bin", big[::-1])
    b.write("big.bin", big + b"B")  # another size: a CLI listing for itself sends it too

    def env(who):
        return {"DATAKIT_DATA_AWS": str(wrapper), "GATE": str(gate), "WHO": who, "AWS": command}

    def wait_for(name):
        wait_until(lambda: (gate / name).exists(), name)

    with a.start("data", "push", env=env("a")) as first, b.start("data", "push", env=env("b")) as second:
        wait_for("ready-a")
        wait_for("ready-b")  # both have planned against the same S3 state
        (gate / "go-a").touch()
        wait_for("sent-a")  # A's upload is on S3...
        (gate / "go-b").touch()
        (gate / "end-b").touch()
        b_result = second.finish(timeout=60)  # ...then B's comes, and B checks
        (gate / "end-a").touch()
        a_result = first.finish(timeout=60)  # A checks last

    if aws == "v2":
        assert a_result.returncode == 0, output(a_result)
        text = assert_clean_error(b_result)
        for name in ("shared.csv", "big.bin"):  # a single upload and a multipart one, both refused
            assert f"conflict: data/{name} (S3 holds another version: someone pushed data/{name} after this push " \
                   "planned it" in text
        assert bucket.objects(a.name) == {"shared.csv": b"v2,A's!\n", "big.bin": big[::-1]}
        assert b.files() == {"shared.csv": b"v2,B's edit\n", "big.bin": big + b"B"}  # B's edits wait, named
        assert "checked after upload only" not in output(a_result)
        return
    assert b_result.returncode == 0, output(b_result)
    text = assert_clean_error(a_result)
    for name in ("shared.csv", "big.bin"):
        assert f"conflict: data/{name} (S3 holds another version: someone pushed this file while this push ran)" in text
    assert "did not load datakit's plugin" in text
    assert bucket.objects(a.name) == {"shared.csv": b"v2,B's edit\n", "big.bin": big + b"B"}
    # A's edits are not forgotten: status and pull both call them conflicts.
    report = json.loads(ok(a.run("data", "status", "--json")).stdout)
    assert report["conflicts"] == {"shared.csv": "changed on both sides", "big.bin": "changed on both sides"}
    assert_clean_error(a.run("data", "pull"))
    assert a.files() == {"shared.csv": b"v2,A's!\n", "big.bin": big[::-1]}


def test_a_same_size_edit_with_an_old_time_is_still_pushed(pair, bucket):
    a, b = pair
    edited = b.write("shared.csv", "v1,bbbb\n")  # same size as v1
    old = edited.stat().st_mtime_ns - 3600 * 10**9  # e.g. restored from a backup
    os.utime(edited, ns=(old, old))

    result = ok(b.run("data", "push"))

    assert "upload: data/shared.csv to s3://" in result.stdout
    assert "1 file(s) sent (8 B)" in result.stdout
    assert bucket.objects(a.name) == {"shared.csv": b"v1,bbbb\n"}
    assert edited.stat().st_mtime_ns == old  # the user's file keeps its time


def test_a_large_scattered_pull_brings_exactly_the_changed_files(pair):
    # 30 changed files spread through a folder of 60 need more include patterns than a
    # pull uses: the other objects are then stood in for by placeholders instead.
    a, b = pair
    for i in range(60):
        a.write(f"raw/{i:02}.csv", f"v1,{i:02}\n")
    a.write("clean/all.csv", "v1\n")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    for i in range(0, 60, 2):
        a.write(f"raw/{i:02}.csv", f"v2,{i:02}\n")  # same size as v1
    ok(a.run("data", "push"))
    b.write("raw/01.csv", "B's edit\n")  # not changed on S3: kept
    b.write("clean/all.csv", "B's!\n")  # same size, not changed on S3: kept

    expected = b.files()
    expected.update({f"raw/{i:02}.csv": f"v2,{i:02}\n".encode() for i in range(0, 60, 2)})

    result = ok(b.run("data", "pull"))

    assert b.files() == expected
    assert expected["raw/01.csv"] == b"B's edit\n" and expected["clean/all.csv"] == b"B's!\n"
    assert "Pull: 30 file(s) received" in result.stdout
    assert "kept: data/raw/01.csv (changed locally" in result.stderr


def test_pull_force_takes_s3_for_conflicts_and_keeps_edits_s3_did_not_change(pair):
    a, b = pair
    a.write("mine.csv", "v1\n")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    a.write("shared.csv", "A's version\n")
    ok(a.run("data", "push"))
    b.write("shared.csv", "B's version!\n")  # a conflict
    b.write("mine.csv", "B's unpushed edit\n")  # S3 did not change it

    result = ok(b.run("data", "pull", "force"))

    assert b.files() == {"shared.csv": b"A's version\n", "mine.csv": b"B's unpushed edit\n"}
    assert "kept: data/mine.csv (changed locally since the last sync; not overwritten)" in result.stderr


@pytest.mark.skipif(not AWS_V2, reason="no AWS CLI v2 at /usr/bin/aws (Debian's awscli package; .ci/run installs it)")
def test_an_aws_cli_v2_pushes_and_pulls_and_status_says_what_protects_its_pushes(pair, bucket):
    a, b = pair
    v2 = {"DATAKIT_DATA_AWS": AWS_V2}
    a.write("shared.csv", "v2 from A\n")  # replaces v1: carries the probes
    a.write("raw/new.csv", "new\n")

    pushed = ok(a.run("data", "push", env=v2))
    pulled = ok(b.run("data", "pull", env=v2))
    status = ok(a.run("data", "status", env=v2)).stdout
    report = json.loads(ok(a.run("data", "status", "--json", env=v2)).stdout)

    assert "Push: 2 file(s) sent" in pushed.stdout and "Pull: 2 file(s) received" in pulled.stdout
    assert "DATAKIT_DATA_AWS" not in pushed.stderr
    assert bucket.objects(a.name) == {"shared.csv": b"v2 from A\n", "raw/new.csv": b"new\n"}
    assert b.files() == {"shared.csv": b"v2 from A\n", "raw/new.csv": b"new\n"}
    # The probes rode on v2's upload: SeaweedFS proved both kinds of conditional write.
    for words in ("new files", "changed files"):
        assert f"concurrent pushes, {words}: compare-and-swap: proven: the server refused" in status
    assert report["protection"]["replace"]["mode"] == "compare-and-swap"
    assert "DATAKIT_DATA_AWS" not in status


def test_status_of_30000_new_files_is_rolled_up_by_folder_and_lists_each_with_all(project, bucket):
    """Status grows with the files, not their square (30,000 new files asked of a list
    took 18-26 s), and says in a screenful what it would list in 30,000 lines."""
    project.configure()
    for folder, count in (("raw", 20_000), ("clean", 9_999)):
        target = project.data / folder
        target.mkdir(parents=True)
        for i in range(count):
            (target / f"{i:05}.csv").write_bytes(b"x" * 10)
    project.write("top.csv", "t\n")

    report = json.loads(ok(project.run("data", "status", "--json", timeout=300)).stdout)
    text = ok(project.run("data", "status", timeout=300)).stdout
    every = ok(project.run("data", "status", "--all", timeout=300)).stdout

    assert len(report["push"]["new"]) == 30_000 and report["push"]["bytes"]["raw/00000.csv"] == 10
    assert "push would send: 30000 new, 0 changed" in text
    assert "  new: data/ (1 file, 2 B)" in text
    assert "  new: data/clean/ (9,999 files, 97.6 KiB)" in text
    assert "  new: data/raw/ (20,000 files, 195.3 KiB)" in text
    assert "  kept: data/raw/ (20,000 files: here only, not pushed yet: push to share it)" in text  # by the pull
    assert "(60,000 file lines rolled up by folder: `datakit data status --all` lists each one" in text
    assert len(text.splitlines()) < 25
    assert "  new: data/raw/19999.csv" in every and len(every.splitlines()) > 30_000
    assert bucket.objects(project.name) == {}  # status changes nothing
