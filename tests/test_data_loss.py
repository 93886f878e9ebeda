"""The paths where a sync could lose someone's work, each run end to end against a real server."""
import functools
import json
import os
import signal
import socket

import pytest

from helpers import BUCKET, Bucket, _client, assert_clean_error, ok, output, wait_until

MiB = 1024 * 1024


def record_of(project) -> bytes:
    return (project.root / ".datakit-data" / "record.json").read_bytes()


# the sync record belongs to one S3 location ------------------------------

@pytest.fixture(scope="session")
def second_bucket(s3):
    client = _client(s3.endpoint_url)
    client.create_bucket(Bucket="datakit-test-two")
    return Bucket(client, "datakit-test-two")


@pytest.mark.parametrize("change", ["s3_path", "s3_bucket"])
def test_a_record_never_applies_to_another_s3_location(project, bucket, second_bucket, change):
    project.configure()
    project.write("shared.csv", "mine\n")
    ok(project.run("data", "push"))
    # Someone else's different file waits at the new location.
    if change == "s3_path":
        bucket.put(f"{project.name}-moved/shared.csv", b"theirs, elsewhere\n")
        project.configure(s3_path=f"{project.name}-moved")
        there = (bucket, f"{project.name}-moved")
    else:
        second_bucket.put(f"{project.name}/shared.csv", b"theirs, elsewhere\n")
        project.configure(s3_bucket=second_bucket.name)
        there = (second_bucket, project.name)

    pulled = project.run("data", "pull")
    pushed = project.run("data", "push")

    for result in (pulled, pushed):
        text = assert_clean_error(result)
        assert "conflict: data/shared.csv (differs, and there is no sync record yet)" in text
    assert project.files() == {"shared.csv": b"mine\n"}
    assert there[0].objects(there[1]) == {"shared.csv": b"theirs, elsewhere\n"}


def test_a_record_never_applies_through_another_endpoint(project, proxy):
    project.configure()
    project.write("a.csv", "a")
    ok(project.run("data", "push"))
    assert "(no sync record yet)" not in ok(project.run("data", "status")).stdout

    project.configure(s3_endpoint_url=proxy.endpoint_url)  # same server, another address

    report = json.loads(ok(project.run("data", "status", "--json")).stdout)
    assert report["has_record"] is False
    assert "(no sync record yet)" in ok(project.run("data", "status")).stdout


# big files: multipart ETags -----------------------------------------------

@functools.cache
def big(seed: int, size: int = 20 * MiB) -> bytes:
    block = bytes((seed + i) % 251 for i in range(MiB))
    return b"".join(bytes([seed, i % 256]) + block[2:] for i in range(size // MiB))


@pytest.mark.parametrize("aws_config", [None, "[default]\ns3 =\n    multipart_chunksize = 16MB\n"])
def test_big_files_are_a_baseline_a_conflict_and_forced_like_small_ones(project, colleague, bucket, aws_config):
    if aws_config:
        project.home.aws_config.parent.mkdir(parents=True, exist_ok=True)
        project.home.aws_config.write_text(aws_config)
    project.configure()
    colleague.configure()
    project.write("big.bin", big(1))
    ok(project.run("data", "push"))
    etag = bucket.client.head_object(Bucket=BUCKET, Key=f"{project.name}/big.bin")["ETag"]
    assert etag.endswith('-2"' if aws_config else '-3"'), etag

    # B copied the same file by hand: identical content is the baseline, nothing moves.
    colleague.write("big.bin", big(1))
    result = ok(colleague.run("data", "pull"))
    assert "Pull: 0 file(s) received (0 B), 0 deleted, 1 unchanged, 0 conflict(s)" in result.stdout

    # Both edit it: a conflict, B's bytes stay; `force` takes S3's.
    project.write("big.bin", big(2))
    ok(project.run("data", "push"))
    colleague.write("big.bin", big(3))
    text = assert_clean_error(colleague.run("data", "pull"))
    assert "conflict: data/big.bin (changed on both sides)" in text
    assert colleague.files()["big.bin"] == big(3)
    text = assert_clean_error(colleague.run("data", "push"))
    assert "conflict: data/big.bin (changed on both sides)" in text
    assert bucket.objects(project.name)["big.bin"] == big(2)

    ok(colleague.run("data", "pull", "force"))
    assert colleague.files()["big.bin"] == big(2)
    result = ok(colleague.run("data", "push"))
    assert "0 file(s) sent" in result.stdout and "1 unchanged" in result.stdout


# interrupted pull ----------------------------------------------------------

def test_interrupted_pull_leaves_no_half_written_file_and_a_rerun_finishes(project, colleague, bucket, proxy):
    project.configure()
    for i in range(30):
        project.write(f"small/{i:02d}.csv", f"{i},x\n" * 200)
    project.write("big.bin", big(7, 12 * MiB))
    ok(project.run("data", "push"))
    colleague.configure(s3_endpoint_url=proxy.endpoint_url)
    colleague.data.mkdir(parents=True)
    (colleague.data / "mine.csv").write_text("B's own file\n")

    # 3 MiB get through, then nothing: the 12 MiB download is cut in the middle.
    proxy.hold_after(3 * MiB)
    with colleague.start("data", "pull") as proc:
        wait_until(lambda: proxy.held, "a held transfer")
        proc.signal(signal.SIGINT)
        result = proc.finish(timeout=60)
    proxy.release()

    text = assert_clean_error(result, code=130)
    assert "Pull interrupted; files already transferred are complete." in text
    expected = project.files()
    got = colleague.files()
    assert got.pop("mine.csv") == b"B's own file\n"
    assert len(got) < len(expected)
    for path, content in got.items():
        assert content == expected[path], f"data/{path} is not the object's bytes"
    assert not [p for p in (colleague.root / ".datakit-data").iterdir() if p.name.startswith("pull-")]

    ok(colleague.run("data", "pull"))
    assert colleague.files() == {**expected, "mine.csv": b"B's own file\n"}


# dryrun changes nothing ---------------------------------------------------

def test_pull_dryrun_and_pull_delete_dryrun_change_nothing(pair, bucket):
    a, b = pair
    a.write("new.csv", "new")
    a.write("shared.csv", "v2 of shared\n")
    a.write("gone.csv", "g")
    ok(a.run("data", "push"))
    ok(b.run("data", "pull"))
    (a.data / "gone.csv").unlink()
    a.write("shared.csv", "v3 of shared\n")
    a.write("newer.csv", "n")
    ok(a.run("data", "push", "delete"))
    files, record = b.files(), record_of(b)

    plain = ok(b.run("data", "pull", "dryrun"))
    with_delete = ok(b.run("data", "pull", "delete", "dryrun"))

    assert b.files() == files and record_of(b) == record
    url = f"s3://{BUCKET}/{a.name}/"
    for result in (plain, with_delete):
        assert f"(dryrun) download: {url}newer.csv to data/newer.csv" in result.stdout
        assert f"(dryrun) download: {url}shared.csv to data/shared.csv" in result.stdout
    assert "(dryrun) delete" not in plain.stdout
    assert "(dryrun) delete: data/gone.csv" in with_delete.stdout
    assert "Pull (dryrun): 2 file(s) would be received (14 B), 1 would be deleted" in with_delete.stdout


# deleted on one side, changed on the other ---------------------------------

def test_pull_delete_keeps_a_local_edit_of_a_file_deleted_on_s3(pair, bucket):
    a, b = pair
    (a.data / "shared.csv").unlink()
    ok(a.run("data", "push", "delete"))
    b.write("shared.csv", "B kept working on this\n")

    text = assert_clean_error(b.run("data", "pull", "delete"))

    assert "conflict: data/shared.csv (deleted on S3 but changed locally)" in text
    assert b.files() == {"shared.csv": b"B kept working on this\n"}


def test_push_delete_keeps_a_remote_edit_of_a_file_deleted_locally(pair, bucket):
    a, b = pair
    a.write("shared.csv", "A's newer version\n")
    ok(a.run("data", "push"))
    (b.data / "shared.csv").unlink()

    text = assert_clean_error(b.run("data", "push", "delete"))

    assert "conflict: data/shared.csv (deleted locally but changed on S3)" in text
    assert bucket.objects(a.name) == {"shared.csv": b"A's newer version\n"}


# flag words with effects a user can see --------------------------------------

def test_no_sign_request_sends_no_credentials(project, colleague, auth_s3, bucket):
    project.configure(s3_endpoint_url=auth_s3.endpoint_url)
    project.write("a.csv", "a")

    refused = project.run("data", "push", "no-sign-request")
    text = assert_clean_error(refused)
    assert f'access denied to bucket "{BUCKET}"' in text
    assert Bucket(_client(auth_s3.endpoint_url), BUCKET).keys(project.name) == []
    ok(project.run("data", "push"))  # signed, the same push is accepted

    # A bucket open to anyone (the session's server) is read without credentials.
    bucket.put(f"{colleague.name}-open/public.csv", b"open data")
    colleague.configure(s3_path=f"{colleague.name}-open")
    nobody = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    ok(colleague.run("data", "pull", "no-sign-request", env=nobody))
    assert colleague.files() == {"public.csv": b"open data"}
    # Replacing a file asks whether the bucket keeps versions: unsigned too.
    bucket.put(f"{colleague.name}-open/public.csv", b"open data, revised")
    replaced = ok(colleague.run("data", "pull", "no-sign-request", env=nobody))
    assert "Pull: 1 file(s) received" in replaced.stdout and "credentials" not in replaced.stderr
    assert colleague.files() == {"public.csv": b"open data, revised"}


def test_links_are_followed_by_default_and_skipped_with_no_follow_symlinks(project, colleague, tmp_path, bucket):
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "file.csv").write_text("through a file link\n")
    (outside / "folder" / "inner.csv").write_text("through a folder link\n")
    for checkout, path in ((project, "follow"), (colleague, "no-follow")):
        checkout.configure(s3_path=f"{project.name}-{path}")
        checkout.write("real.csv", "real\n")
        os.symlink(outside / "file.csv", checkout.data / "file-link.csv")
        os.symlink(outside / "folder", checkout.data / "folder-link")

    ok(project.run("data", "push"))
    ok(colleague.run("data", "push", "no-follow-symlinks"))

    assert bucket.objects(f"{project.name}-follow") == {
        "real.csv": b"real\n",
        "file-link.csv": b"through a file link\n",
        "folder-link/inner.csv": b"through a folder link\n",
    }
    assert bucket.objects(f"{project.name}-no-follow") == {"real.csv": b"real\n"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped_with_exit_2(project, bucket):
    project.configure()
    project.write("good.csv", "good")
    secret = project.write("locked.csv", "locked")
    secret.chmod(0)

    text = assert_clean_error(project.run("data", "push"), code=2)

    assert "data/locked.csv (permission denied)" in text
    assert bucket.objects(project.name) == {"good.csv": b"good"}


def test_socket_is_skipped_with_exit_2(project, bucket):
    project.configure()
    project.write("good.csv", "good")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(project.data / "app.sock"))
    try:
        text = assert_clean_error(project.run("data", "push"), code=2)
    finally:
        sock.close()

    assert "1 file(s) skipped: data/app.sock (not a regular file: a FIFO, socket or device)" in text
    assert bucket.objects(project.name) == {"good.csv": b"good"}


# status -----------------------------------------------------------------------

def test_status_without_a_record_lists_both_sides(project, bucket):
    project.configure()
    project.write("local.csv", "l")
    bucket.put(f"{project.name}/remote.csv", b"r")

    text = ok(project.run("data", "status")).stdout

    assert "last push: never, last pull: never  (no sync record yet)" in text
    assert "push would send: 1 new, 0 changed" in text and "  new: data/local.csv" in text
    assert "pull would receive: 1 new, 0 changed" in text and "  new: data/remote.csv" in text
    assert not (project.root / ".datakit-data" / "record.json").exists()


def test_status_that_cannot_reach_the_endpoint_says_so(project):
    from s3server import free_ports

    endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"
    project.configure(s3_endpoint_url=endpoint)
    project.write("a.csv", "a")

    text = assert_clean_error(project.run("data", "status"))

    assert f"could not connect to {endpoint}" in text


def test_pull_delete_with_an_empty_s3_path_is_refused(project, bucket):
    project.configure(s3_path="")
    project.write("mine.csv", "mine")

    text = assert_clean_error(project.run("data", "pull", "delete"))

    assert f'Refusing `delete` with an empty "s3_path" in config/datakit-data.json' in text
    assert f"the whole bucket {BUCKET}" in text
    assert project.files() == {"mine.csv": b"mine"}


# damaged state -------------------------------------------------------------------

@pytest.mark.parametrize("damage", [
    '{"version": 1, "target": "TARGET", "files": ["shared.csv"], "last": {}}',
    '{"version": 1, "target": "TARGET", "files": {"shared.csv": "abc"}, "last": {}}',
    '{"version": 1, "target": "TARGET", "files": {"shared.csv": {"size": "8"}}, "last": {}}',
    '{"version": 1, "target": "TARGET", "files": {}, "last": []}',
    '{"version": 1, "files": {',
    "[]",
    "[" * 100_000 + "]" * 100_000,  # nested past Python's recursion limit
])
def test_a_damaged_record_is_named_once_and_treated_as_none(pair, bucket, damage):
    a, b = pair
    record = b.root / ".datakit-data" / "record.json"
    target = json.loads(record.read_text())["target"]
    record.write_text(damage.replace("TARGET", target))
    a.write("shared.csv", "A's edit\n")
    ok(a.run("data", "push"))
    b.write("shared.csv", "B's edit\n")

    status = b.run("data", "status")
    pulled = b.run("data", "pull")

    assert status.returncode == 0 and status.stderr.count(f"{record} is damaged") == 1, output(status)
    assert "data/shared.csv (differs, and there is no sync record yet)" in status.stdout
    text = assert_clean_error(pulled)
    assert text.count(f"{record} is damaged") == 1, text
    assert "conflict: data/shared.csv (differs, and there is no sync record yet)" in text
    assert b.files() == {"shared.csv": b"B's edit\n"}
    # The pull wrote a sound record again; the conflict stays one until resolved.
    assert "is damaged" not in output(b.run("data", "pull"))


def test_a_file_where_the_state_folder_belongs_is_named(project):
    project.configure()
    project.write("a.csv", "a")
    (project.root / ".datakit-data").write_text("not a folder")

    text = assert_clean_error(project.run("data", "push"))

    assert f"{project.root / '.datakit-data'} is not a folder" in text and "Move that file away" in text


def test_a_file_deleted_while_the_push_runs_is_skipped_and_the_rest_sent(project, bucket, proxy):
    project.configure(s3_endpoint_url=proxy.endpoint_url)
    project.write("stays.csv", "stays\n")
    doomed = project.write("doomed.csv", "doomed\n")
    proxy.hold()  # the push has scanned data/ and waits for its listing
    with project.start("data", "push") as proc:
        proxy.wait_for_connections(1)
        doomed.unlink()
        proxy.release()
        result = proc.finish(timeout=60)

    text = assert_clean_error(result, code=2)
    assert "data/doomed.csv (it was deleted or moved while the push ran)" in text
    assert bucket.objects(project.name) == {"stays.csv": b"stays\n"}


def test_a_file_edited_while_the_pull_runs_is_never_overwritten(pair, proxy):
    a, b = pair
    a.write("shared.csv", "A's edit, on S3\n")
    ok(a.run("data", "push"))
    b.configure(s3_endpoint_url=proxy.endpoint_url)
    ok(b.run("data", "pull", "force"))  # a record for the proxy's endpoint
    a.write("shared.csv", "A's second edit\n")
    ok(a.run("data", "push"))
    proxy.hold()  # B's pull has scanned data/ and waits for its listing
    with b.start("data", "pull") as proc:
        proxy.wait_for_connections(proxy.connections + 1)
        b.write("shared.csv", "B's edit, made while the pull ran\n")
        proxy.release()
        result = proc.finish(timeout=60)

    text = assert_clean_error(result)
    assert "conflict: data/shared.csv (changed locally while the pull ran; left as it is)" in text
    assert b.files() == {"shared.csv": b"B's edit, made while the pull ran\n"}


def test_a_synced_file_the_scan_cannot_read_is_never_deleted_nor_restored(pair, bucket, tmp_path):
    a, b = pair
    (b.data / "shared.csv").unlink()
    os.symlink(tmp_path / "moved-away.csv", b.data / "shared.csv")  # now a dangling link

    pushed = b.run("data", "push", "delete")
    pulled = b.run("data", "pull")

    for result in (pushed, pulled):
        text = output(result)
        assert "kept: data/shared.csv (a link whose target does not exist; left as it is)" in text, text
    assert assert_clean_error(pushed, code=2)
    assert bucket.objects(a.name) == {"shared.csv": b"v1,aaaa\n"}
    assert os.path.islink(b.data / "shared.csv") and not (tmp_path / "moved-away.csv").exists()
