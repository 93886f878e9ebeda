"""The second adversarial pass: links, partial copies, leftovers and servers that lie.

Each test drives the real `datakit` against SeaweedFS (directly, or through the
stand-in proxy) and asserts what a user would see: bytes on disk and on S3, the
exit code, the message.
"""
import json
import os
import shutil
import subprocess
import uuid

import pytest

from helpers import VERSIONED, assert_clean_error, ok

MiB = 1024 * 1024


# a staged copy is whole or not there ----------------------------------------

@pytest.fixture
def small_state_disk(project):
    """The project's state folder on a 2 MiB tmpfs: data/ is on another disk (no hard
    links), and a staged copy of a bigger file runs out of space part-way."""
    state = project.root / ".datakit-data"
    state.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs root and tmpfs to make a small disk: {mounted.stderr.strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


def test_a_staged_copy_that_fails_part_way_is_never_uploaded(project, bucket, small_state_disk):
    project.configure()
    project.write("big.bin", b"v1" * MiB)  # 2 MiB: fits nowhere beside the record
    project.write("small.csv", "s\n")

    result = project.run("data", "push")

    text = assert_clean_error(result, code=2)
    assert "data/big.bin (no space left on device)" in text
    assert bucket.objects(project.name) == {"small.csv": b"s\n"}  # nothing of big.bin
    assert not [p for p in small_state_disk.rglob("*") if p.name.endswith(".part")]


# links ----------------------------------------------------------------------

def test_a_folder_link_to_a_missing_drive_deletes_nothing_on_either_side(pair, bucket, tmp_path):
    a, b = pair
    drive = tmp_path / "drive"
    (drive / "raw").mkdir(parents=True)
    (drive / "raw" / "x.csv").write_text("x\n")
    (a.data / "raw").symlink_to(drive / "raw")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    shutil.rmtree(drive)  # unplugged

    pushed = a.run("data", "push", "delete")

    assert "data/raw (a link whose target does not exist)" in assert_clean_error(pushed, code=2)
    assert bucket.objects(a.name) == {"shared.csv": b"v1,aaaa\n", "raw/x.csv": b"x\n"}
    ok(b.run("data", "pull", "delete"))
    assert b.files() == {"shared.csv": b"v1,aaaa\n", "raw/x.csv": b"x\n"}


def test_push_delete_without_following_links_deletes_nothing_pushed_through_them(pair, bucket, tmp_path):
    a, _ = pair
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.csv").write_text("x\n")
    (a.data / "raw").symlink_to(outside)
    (a.data / "one.csv").symlink_to(outside / "x.csv")
    ok(a.run("data", "push"))

    result = ok(a.run("data", "push", "delete", "no-follow-symlinks"))

    assert bucket.objects(a.name) == {"shared.csv": b"v1,aaaa\n", "raw/x.csv": b"x\n", "one.csv": b"x\n"}
    assert "kept: data/raw/x.csv (under a link that is not followed (no-follow-symlinks)" in result.stderr
    assert "0 deleted" in result.stdout


def test_a_folder_link_inside_data_is_an_alias_that_is_never_synced_through(project, bucket):
    project.configure()
    project.write("2024-12/x.csv", "x\n")
    project.write("2024-12/y.csv", "y\n")
    (project.data / "latest").symlink_to("2024-12")

    pushed = project.run("data", "push")

    text = assert_clean_error(pushed, code=2)
    assert ("data/latest/ (a link to data/2024-12/, which syncs under its own name; add the link to "
            "\"exclude\" or remove it)") in text
    assert bucket.objects(project.name) == {"2024-12/x.csv": b"x\n", "2024-12/y.csv": b"y\n"}
    # A colleague whose latest/ is a real folder pushed other bytes under that name.
    bucket.put(f"{project.name}/latest/y.csv", b"their y\n")
    pulled = ok(project.run("data", "pull", "delete"))
    assert ("kept: data/latest/y.csv (under data/latest/, a link to data/2024-12/, which syncs under its own "
            "name; add the link to \"exclude\" or remove it; left as it is)") in pulled.stderr
    assert (project.data / "2024-12" / "y.csv").read_bytes() == b"y\n"
    assert (project.data / "2024-12" / "x.csv").read_bytes() == b"x\n"
    assert os.path.islink(project.data / "latest")


# our own temporary files ---------------------------------------------------------

def test_a_temporary_copy_a_killed_run_left_is_never_synced_and_removed(project, bucket):
    project.configure()
    project.write("a.csv", "a\n")
    leftover = project.write("sub/.datakit-data-k1lled.part", "half a downloa")
    bucket.put(f"{project.name}/.datakit-data-other.part", b"someone else's leftover")

    ok(project.run("data", "push"))
    ok(project.run("data", "pull"))

    assert not leftover.exists()
    assert project.files() == {"a.csv": b"a\n"}
    assert set(bucket.objects(project.name)) == {"a.csv", ".datakit-data-other.part"}


# a server that lies about versions -------------------------------------------

def test_as_of_refuses_bytes_that_are_not_the_version_asked_for(tmp_path, home, versioned, standin):
    from helpers import Project

    project = Project(tmp_path / f"asof-{uuid.uuid4().hex[:8]}", home)
    project.configure(s3_bucket=VERSIONED, s3_endpoint_url=standin.endpoint_url)
    project.write("story.csv", "the first version\n")
    ok(project.run("data", "push"))
    project.write("story.csv", "the second, current version\n")
    ok(project.run("data", "push"))
    history = json.loads(ok(project.run("data", "history", "--json", "data/story.csv")).stdout)["versions"]
    first = history[-1]["version_id"]
    record = (project.root / ".datakit-data" / "record.json").read_bytes()
    standin.ignore_version_ids()

    result = project.run("data", "pull", "data/story.csv", "--as-of", first)

    text = assert_clean_error(result)
    assert f"S3 sent other bytes than version {first} of data/story.csv" in text
    assert project.files() == {"story.csv": b"the second, current version\n"}
    assert json.loads((project.root / ".datakit-data" / "record.json").read_bytes())["files"] == (
        json.loads(record)["files"])  # still the current version's ETag


# names the AWS CLI or S3 cannot take ----------------------------------------------

def test_a_long_name_of_many_byte_characters_is_skipped_by_name_both_ways(project, bucket):
    project.configure()
    long_name = "é" * 124 + ".csv"  # 252 bytes: fits 255, but not with the CLI's 9 more characters
    project.write(long_name, "x\n")
    project.write("ok.csv", "ok\n")

    pushed = project.run("data", "push")

    assert f"data/{long_name} (a name the AWS CLI cannot download" in assert_clean_error(pushed, code=2)
    assert bucket.objects(project.name) == {"ok.csv": b"ok\n"}
    (project.data / long_name).unlink()
    bucket.put(f"{project.name}/{long_name}", b"from someone else\n")
    pulled = project.run("data", "pull")
    assert "(a name the AWS CLI cannot download" in assert_clean_error(pulled, code=2)
    assert project.files() == {"ok.csv": b"ok\n"}


def test_a_path_whose_key_is_longer_than_s3_allows_is_skipped_by_name(project, bucket):
    project.configure()
    deep = "/".join(["d" * 200] * 5) + "/x.csv"  # 1,000+ bytes below s3_path/
    project.write(deep, "x\n")
    project.write("ok.csv", "ok\n")

    text = assert_clean_error(project.run("data", "push"), code=2)

    assert "its S3 key would be longer than S3's 1024 bytes; shorten its path" in text
    assert bucket.objects(project.name) == {"ok.csv": b"ok\n"}


# state and trees that would hang or crash ------------------------------------------

def test_a_fifo_where_the_record_belongs_is_named_and_hangs_nothing(pair):
    a, _ = pair
    record = a.root / ".datakit-data" / "record.json"
    record.unlink()
    os.mkfifo(record)

    status = a.run("data", "status", timeout=60)
    pushed = a.run("data", "push", timeout=60)

    assert status.returncode == 0 and f"{record} is damaged (not a regular file)" in status.stderr
    ok(pushed)  # identical on both sides: the baseline, and a new record
    assert record.is_file() and json.loads(record.read_text())["files"]["path"] == ["shared.csv"]


def test_a_tree_deeper_than_200_levels_is_skipped_by_name(project, bucket):
    project.configure()
    project.write("/".join(["d"] * 250) + "/x.csv", "deep\n")
    project.write("ok.csv", "ok\n")

    text = assert_clean_error(project.run("data", "push"), code=2)

    assert "(a folder more than 200 levels deep)" in text
    assert bucket.objects(project.name) == {"ok.csv": b"ok\n"}


def test_history_names_who_pushed_the_version_from_before_versioning(project, s3):
    from helpers import Bucket, _client

    name = f"later-versioned-{uuid.uuid4().hex[:8]}"
    client = _client(s3.endpoint_url)
    client.create_bucket(Bucket=name)
    project.configure(s3_bucket=name)
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)

    def as_user(who):
        subprocess.run(["git", "-C", str(project.root), "config", "user.name", who], check=True)

    as_user("Before Versioning")
    project.write("story.csv", "one\n")
    ok(project.run("data", "push"))
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    as_user("After Versioning")
    project.write("story.csv", "two, longer\n")
    ok(project.run("data", "push"))

    versions = json.loads(ok(project.run("data", "history", "--json", "data/story.csv")).stdout)["versions"]

    assert [(v["size"], v["pushed_by"]) for v in versions] == [(12, "After Versioning"), (4, "Before Versioning")]
    assert versions[-1]["version_id"] == "null"
    assert Bucket(client, name).objects(project.name) == {"story.csv": b"two, longer\n"}


def test_pulling_a_folder_whose_name_holds_brackets_downloads_only_the_change(pair):
    a, b = pair
    for i in range(12):
        a.write(f"raw[1]/{i:02}.csv", f"v1 {i}\n")
    a.write("raw1/00.csv", "a neighbour the brackets would match\n")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    a.write("raw[1]/05.csv", "v2 5\n")
    a.write("raw1/00.csv", "changed, but not in the folder asked for\n")
    ok(a.run("data", "push"))

    result = ok(b.run("data", "pull", "data/raw[1]/"))

    assert result.stdout.count("download:") == 1, result.stdout
    assert b.files()["raw[1]/05.csv"] == b"v2 5\n"
    assert b.files()["raw1/00.csv"] == b"a neighbour the brackets would match\n"


def test_ctrl_c_during_an_as_of_pull_ends_it_at_once(tmp_path, home, versioned, standin):
    import signal
    import time

    from helpers import Project, wait_until

    project = Project(tmp_path / f"asof-{uuid.uuid4().hex[:8]}", home)
    project.configure(s3_bucket=VERSIONED, s3_endpoint_url=standin.endpoint_url)
    for text in ("one\n", "two, longer\n"):
        project.write("story.csv", text)
        ok(project.run("data", "push"))
    first = json.loads(ok(project.run("data", "history", "--json", "data/story.csv")).stdout)["versions"][-1]

    standin.hold(lambda r: r.method == "GET" and "versionId" in r.query)  # a server that hangs
    with project.start("data", "pull", "data/story.csv", "--as-of", first["version_id"]) as pulling:
        wait_until(lambda: standin.held, "held download")
        pulling.signal(signal.SIGINT)
        began = time.monotonic()
        result = pulling.finish(timeout=30)
        took = time.monotonic() - began

    assert result.returncode == 130 and "Pull interrupted" in result.stdout + result.stderr
    assert took < 10, f"{took:.1f} s after Ctrl-C"  # the read timeout is 15 s, 3 attempts
    assert project.files() == {"story.csv": b"two, longer\n"}
