"""Big uploads that pick up where they stopped: a multipart upload interrupted by Ctrl-C
or a kill stays on S3, journaled; the next push of the same, unchanged file sends only
the parts S3 does not hold (counted at a loopback stand-in), checked against the local
bytes, and completes; a file changed since starts over and its old upload is aborted."""
import json
import os
import re
import signal

import pytest

from helpers import BUCKET, Project, ok, wait_until

MiB = 1024 * 1024
PART = 8 * MiB


@pytest.fixture
def pushing_through_standin(tmp_path, home, standin):
    project = Project(tmp_path / "resume", home)
    # One request at a time: parts go one after another, so holding part 3 means 1 and 2 are on S3.
    project.configure(s3_path=f"resume-{tmp_path.name}", s3_endpoint_url=standin.endpoint_url,
                      max_concurrent_requests=1)
    return standin, project


def _parts_sent(standin, key: str) -> list[int]:
    return [int(r.headers.get("content-length", 0)) for r in standin.seen
            if r.method == "PUT" and r.key == key and ("partNumber" in r.query or "uploadId" not in r.query)]


def _unfinished(bucket, prefix: str) -> list:
    return bucket.client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads") or []


def _journal(project) -> list[dict]:
    path = project.root / ".datakit-data" / "uploads.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _stop_at_part(standin, project, key: str, part: int, stop: int = signal.SIGINT, *words: str):
    """Push, hold the upload of part ``part`` of key at the stand-in, stop the push there
    (its whole process group), then let the held request go on; the push's result."""
    standin.hold(lambda r: r.method == "PUT" and r.key == key and r.query.get("partNumber") == [str(part)])
    with project.start("data", "push", *words) as pushing:
        wait_until(lambda: standin.held, f"held part {part}")
        pushing.signal(stop)
        result = pushing.finish(timeout=60)
    standin.release()
    return result


@pytest.mark.parametrize("stop", ["SIGINT", "SIGKILL"])
def test_an_interrupted_big_upload_continues_with_the_parts_s3_lacks(pushing_through_standin, bucket, stop):
    standin, project = pushing_through_standin
    prefix = project.config()["s3_path"]
    key = f"{prefix}/big.bin"
    content = os.urandom(5 * PART - 12345)  # five parts, the last one short
    project.write("big.bin", content)

    result = _stop_at_part(standin, project, key, 3, getattr(signal, stop))

    assert result.returncode != 0
    assert len(_unfinished(bucket, prefix)) == 1  # left on S3, not aborted
    assert [entry["key"] for entry in _journal(project)] == [key]
    assert bucket.objects(prefix) == {}
    status = ok(project.run("data", "status")).stdout
    assert "unfinished uploads: 1 (40.0 MiB of files), continued by the next push" in status

    standin.seen.clear()
    pushed = ok(project.run("data", "push"))

    sent = _parts_sent(standin, key)
    assert sum(sent) <= len(content) - 2 * PART, sent  # parts 1 and 2 were not sent again
    assert re.search(r"Continuing the upload of data/big.bin: [23] part\(s\) already on S3", pushed.stderr)
    assert bucket.objects(prefix) == {"big.bin": content}
    assert _unfinished(bucket, prefix) == [] and _journal(project) == []


def test_a_file_changed_after_its_upload_stopped_starts_over(pushing_through_standin, bucket):
    standin, project = pushing_through_standin
    prefix = project.config()["s3_path"]
    key = f"{prefix}/big.bin"
    project.write("big.bin", os.urandom(3 * PART))

    _stop_at_part(standin, project, key, 2)
    assert len(_unfinished(bucket, prefix)) == 1
    changed = os.urandom(3 * PART)
    project.write("big.bin", changed)  # saved again: the parts on S3 are another file's

    standin.seen.clear()
    ok(project.run("data", "push"))

    assert sum(_parts_sent(standin, key)) == len(changed)  # all of it
    assert bucket.objects(prefix) == {"big.bin": changed}
    assert _unfinished(bucket, prefix) == [] and _journal(project) == []


def test_a_part_on_s3_that_is_not_the_files_bytes_is_sent_again(pushing_through_standin, bucket):
    """Each part S3 holds is checked against the local bytes before it is trusted: here
    the file was changed in place and its time put back, so size, time and inode match."""
    standin, project = pushing_through_standin
    prefix = project.config()["s3_path"]
    key = f"{prefix}/big.bin"
    content = os.urandom(3 * PART)
    path = project.write("big.bin", content)
    _stop_at_part(standin, project, key, 2)
    before = path.stat()
    changed = b"X" + content[1:]  # part 1 is no longer what S3 holds
    with open(path, "r+b") as fh:
        fh.write(changed[:1])
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns, path.stat().st_ino) == \
        (before.st_size, before.st_mtime_ns, before.st_ino)

    standin.seen.clear()
    pushed = ok(project.run("data", "push"))

    sent = _parts_sent(standin, key)
    assert PART in sent and sum(sent) <= 2 * PART  # part 1 again (and 2 or 3 where S3 lacked it)
    assert bucket.objects(prefix) == {"big.bin": changed}
    assert _unfinished(bucket, prefix) == [] and _journal(project) == []
    assert "Continuing the upload of data/big.bin" in pushed.stderr


def test_a_push_of_another_folder_leaves_an_unfinished_upload_alone(pushing_through_standin, bucket):
    standin, project = pushing_through_standin
    prefix = project.config()["s3_path"]
    key = f"{prefix}/big/big.bin"
    content = os.urandom(3 * PART)
    project.write("big/big.bin", content)
    project.write("small/a.csv", "a\n")
    _stop_at_part(standin, project, key, 2, signal.SIGINT, "data/big/")

    ok(project.run("data", "push", "data/small/"))  # looks at data/small/ only

    assert len(_unfinished(bucket, prefix)) == 1 and [e["key"] for e in _journal(project)] == [key]
    standin.seen.clear()
    ok(project.run("data", "push"))
    assert sum(_parts_sent(standin, key)) <= 2 * PART  # part 1 (at least) was not sent again
    assert bucket.objects(prefix) == {"big/big.bin": content, "small/a.csv": b"a\n"}
    assert _unfinished(bucket, prefix) == []


def test_an_unfinished_upload_older_than_a_week_is_aborted_and_started_over(pushing_through_standin, bucket):
    import datetime

    standin, project = pushing_through_standin
    prefix = project.config()["s3_path"]
    key = f"{prefix}/big.bin"
    content = os.urandom(2 * PART)
    project.write("big.bin", content)
    _stop_at_part(standin, project, key, 2)
    journal = project.root / ".datakit-data" / "uploads.jsonl"
    entry = json.loads(journal.read_text().splitlines()[-1])
    entry["since"] = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=8)).isoformat()
    journal.write_text(json.dumps(entry) + "\n")
    old = _unfinished(bucket, prefix)[0]["UploadId"]

    standin.seen.clear()
    ok(project.run("data", "push"))

    assert sum(_parts_sent(standin, key)) == len(content)  # started over
    assert bucket.objects(prefix) == {"big.bin": content}
    assert old not in [u["UploadId"] for u in _unfinished(bucket, prefix)] and _unfinished(bucket, prefix) == []
