"""What a store is trusted with is what it proved, and the bytes S3 keeps are whole.

Each kind of condition (new files, changed files, deletions) is proven only by an
answer the store alone could give: a request sent under a deliberately wrong
condition that it refuses. `rclone serve s3` (a real server that accepts the headers
and ignores them) and a stand-in that drops If-Match before SeaweedFS sees it are
the stores that do not honour them; rclone and s5cmd are colleagues' tools that
upload the same bytes in other part sizes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ACCESS_KEY, AWS_V2, BUCKET, SECRET_KEY, Project, assert_clean_error, ok, wait_until

MiB = 1024 * 1024


def _status_lines(project, env=None) -> list[str]:
    return [line for line in ok(project.run("data", "status", env=env)).stdout.splitlines()
            if line.startswith("concurrent pushes")]


def test_a_store_that_ignores_every_condition_is_never_said_to_enforce_one(project, rclone, rclone_bucket):
    project.configure(s3_endpoint_url=rclone.endpoint_url)
    project.write("a.csv", "a1\n")
    project.write("b.csv", "b1\n")

    first = ok(project.run("data", "push"))
    project.write("a.csv", "a2\n")
    second = ok(project.run("data", "push"))
    (project.data / "b.csv").unlink()
    third = ok(project.run("data", "push", "delete"))

    assert "This push's new files are checked after upload only: not yet proven on this server" in first.stderr
    assert ("This push's changed files are checked after upload only: the server ignored an upload sent with a "
            "deliberately wrong If-Match") in second.stderr
    # The upload that carried the ignored probe landed under it, not under its own condition: said.
    assert "1 file(s) went to S3 without their condition (the store ignored a probe's, e.g. a.csv)" in second.stderr
    assert "1 deleted" in third.stdout
    # The probes wrote nothing that was not planned: exactly the pushed state.
    assert rclone_bucket.objects(project.name) == {"a.csv": b"a2\n"}
    lines = _status_lines(project)
    assert not [line for line in lines if "compare-and-swap" in line], lines
    assert ("concurrent pushes, changed files: checked after upload only: the server ignored an upload sent with "
            "a deliberately wrong If-Match") in "\n".join(lines)
    assert ("concurrent pushes, deletions: checked just before: the server ignored a delete sent with a "
            "deliberately wrong ETag") in "\n".join(lines)
    report = json.loads(ok(project.run("data", "status", "--json")).stdout)
    assert {kind: value["mode"] for kind, value in report["protection"].items()} == {
        "create": "checked after upload only", "replace": "checked after upload only",
        "delete": "checked just before"}


def test_a_conflict_found_by_datakits_own_check_before_a_delete_proves_nothing(tmp_path, home, rclone,
                                                                               rclone_bucket):
    from s3standin import StandIn

    with StandIn(rclone.ports["port"]) as standin:
        deleter, pusher = (Project(tmp_path / side / "shared", home) for side in ("one", "two"))
        for clone in (deleter, pusher):
            clone.configure(s3_path=f"del-{tmp_path.name}", s3_endpoint_url=standin.endpoint_url)
        deleter.write("x.csv", "v1\n")
        ok(deleter.run("data", "push"))
        ok(pusher.run("data", "pull"))
        (deleter.data / "x.csv").unlink()
        pusher.write("x.csv", "v2, the pusher's\n")
        # The deleter's check just before its delete waits until the pusher's edit has landed.
        heads = []

        def first_check(request) -> bool:  # the deleter's HEAD, not the pusher's own check after
            if request.method == "HEAD" and request.key.endswith("/x.csv"):
                heads.append(request)
                return len(heads) == 1
            return False

        standin.hold(first_check)
        with deleter.start("data", "push", "delete") as deleting:
            wait_until(lambda: standin.held, "held check")
            ok(pusher.run("data", "push"))
            standin.release()
            result = deleting.finish(timeout=120)
        lines = "\n".join(_status_lines(deleter))

    text = assert_clean_error(result)
    assert "conflict: data/x.csv (S3 holds another version: someone pushed data/x.csv after this push" in text
    assert rclone_bucket.objects(f"del-{tmp_path.name}") == {"x.csv": b"v2, the pusher's\n"}
    assert "concurrent pushes, deletions: checked just before: not yet proven" in lines
    assert "compare-and-swap" not in lines


def test_a_store_that_honours_if_none_match_but_not_if_match_is_known_for_each(clones_on_standin, bucket):
    standin, (project, colleague) = clones_on_standin
    standin.strip(lambda r: r.method == "PUT", "if-match")  # SeaweedFS never sees If-Match
    project.write("x.csv", "v1\n")
    ok(project.run("data", "push"))
    ok(colleague.run("data", "pull"))
    project.write("x.csv", "v2, mine\n")

    pushed = ok(project.run("data", "push"))

    assert ("This push's changed files are checked after upload only: the server ignored an upload sent with a "
            "deliberately wrong If-Match") in pushed.stderr
    lines = "\n".join(_status_lines(project))
    assert ("concurrent pushes, new files: compare-and-swap: proven: the server refused an upload sent with "
            "If-None-Match: * onto an object that exists (PreconditionFailed, ") in lines
    assert "concurrent pushes, changed files: checked after upload only: the server ignored" in lines
    assert bucket.objects(project.config()["s3_path"]) == {"x.csv": b"v2, mine\n"}
    # Two pushes planned together: the store cannot refuse the second, and the push says so.
    colleague.write("x.csv", "v2, the colleague's\n")
    project.write("x.csv", "v3, mine\n")
    standin.hold(lambda r: r.method == "PUT" and b"v3, mine" in r.body)
    with project.start("data", "push") as held:
        wait_until(lambda: standin.held, "held upload")
        ok(colleague.run("data", "push", "force"))
        standin.release()
        late = held.finish(timeout=120)
    assert "This push's changed files are checked after upload only: the server ignored" in late.stderr


@pytest.fixture
def clones_on_standin(tmp_path, home, standin):
    clones = [Project(tmp_path / side / "shared", home) for side in ("one", "two")]
    for clone in clones:
        clone.configure(s3_path=f"kinds-{tmp_path.name}", s3_endpoint_url=standin.endpoint_url)
    return standin, clones


@pytest.mark.parametrize("aws", ["bundled", "v2"])
def test_a_file_saved_while_its_multipart_upload_runs_never_leaves_a_mix_on_s3(clones_on_standin, bucket, aws):
    # The same hooks ride in both AWS CLIs (datakit's plugin).
    if aws == "v2" and not AWS_V2:
        pytest.skip("no AWS CLI v2 at /usr/bin/aws (Debian's awscli package; .ci/run installs it)")
    env = {"DATAKIT_DATA_AWS": AWS_V2} if aws == "v2" else {}
    standin, (project, colleague) = clones_on_standin
    prefix = project.config()["s3_path"]
    before = os.urandom(24 * MiB)
    project.write("big.bin", before)
    ok(project.run("data", "push", env=env))
    ok(colleague.run("data", "pull", env=env))
    first_save = bytes(reversed(before))
    project.write("big.bin", first_save)
    second_save = before[::2] + before[1::2]

    # The last part waits, read from the first save, while the file is saved again in place.
    standin.hold(lambda r: r.method == "PUT" and r.query.get("partNumber") == ["3"])
    with project.start("data", "push", env=env) as pushing:
        wait_until(lambda: standin.held, "held part")
        with open(project.data / "big.bin", "r+b") as fh:
            fh.write(second_save)
        standin.release()
        result = pushing.finish(timeout=120)

    text = assert_clean_error(result, code=2)
    assert "data/big.bin (it changed while the push ran; push again)" in text
    assert bucket.objects(prefix) == {"big.bin": before}  # no mix of the two saves
    assert not bucket.client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads")
    ok(project.run("data", "push", env=env))  # as advised: it goes through
    assert bucket.objects(prefix) == {"big.bin": second_save}
    ok(colleague.run("data", "pull", env=env))
    assert colleague.files() == {"big.bin": second_save}


def test_a_multipart_upload_to_a_store_with_plain_md5_etags_is_recorded(project, rclone, rclone_bucket):
    project.configure(s3_endpoint_url=rclone.endpoint_url)
    body = os.urandom(9 * MiB)
    project.write("big.bin", body)

    first = ok(project.run("data", "push"))
    second = ok(project.run("data", "push"))

    assert "Push: 1 file(s) sent (9.0 MiB)" in first.stdout, first.stdout
    assert "Push: 0 file(s) sent" in second.stdout and "1 unchanged" in second.stdout
    assert rclone_bucket.objects(project.name) == {"big.bin": body}
    report = json.loads(ok(project.run("data", "status", "--json")).stdout)
    assert report["conflicts"] == {} and report["push"]["changed"] == [] and report["unchanged"] == 1


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _upload_with_other_tools(home, endpoint_url: str, prefix: str, files: dict) -> None:
    """Upload with s5cmd (5 MiB parts) and rclone (5 MiB parts), as a colleague might."""
    env = {**home.env, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_REGION": "us-east-1", "RCLONE_CONFIG": os.devnull,
           "RCLONE_CONFIG_STORE_TYPE": "s3", "RCLONE_CONFIG_STORE_PROVIDER": "Other",
           "RCLONE_CONFIG_STORE_ENDPOINT": endpoint_url, "RCLONE_CONFIG_STORE_ACCESS_KEY_ID": ACCESS_KEY,
           "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY": SECRET_KEY}
    for i, (name, path) in enumerate(sorted(files.items())):
        if i % 2 == 0:
            args = [_tool("s5cmd"), "--endpoint-url", endpoint_url, "cp", "-p", "5", str(path),
                    f"s3://{BUCKET}/{prefix}/{name}"]
        else:
            args = [_tool("rclone"), "copyto", str(path), f"store:{BUCKET}/{prefix}/{name}",
                    "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
        subprocess.run(args, env=env, check=True, capture_output=True, timeout=120)


def test_files_other_tools_uploaded_in_other_part_sizes_are_known_by_their_bytes(tmp_path, project, colleague,
                                                                                bucket, s3):
    project.configure()
    colleague.configure()
    files = {"s5cmd.bin": os.urandom(12 * MiB), "rclone.bin": os.urandom(11 * MiB), "small.csv": b"s\n"}
    for name, body in files.items():
        project.write(name, body)
    _upload_with_other_tools(project.home, s3.endpoint_url, project.name,
                             {name: project.data / name for name in files})
    etags = {key: head["ETag"] for key in bucket.keys(project.name)
             for head in [bucket.client.head_object(Bucket=BUCKET, Key=key)]}
    assert sorted(etag.strip('"').rpartition("-")[2] for etag in etags.values() if "-" in etag) == ["3", "3"]
    # The colleague has the same bytes already (copied by hand), and one file that differs.
    for name, body in files.items():
        colleague.write(name, body)
    colleague.write("small.csv", "mine\n")

    report = json.loads(ok(colleague.run("data", "status", "--json")).stdout)
    assert report["conflicts"] == {"small.csv": "differs, and there is no sync record yet"}
    assert report["unchanged"] == 2
    assert "conflict: data/small.csv" in assert_clean_error(colleague.run("data", "pull"))
    # Recorded as identical: touching or copying them with their times changes nothing.
    for name in ("s5cmd.bin", "rclone.bin"):
        os.utime(colleague.data / name)
    report = json.loads(ok(colleague.run("data", "status", "--json")).stdout)
    assert report["push"]["changed"] == [] and report["pull"]["changed"] == []
    assert colleague.files()["s5cmd.bin"] == files["s5cmd.bin"]


def _ranged_get(key: str, second: bool):
    """A download request of key (a ranged part of it after the first, with ``second``)."""
    def match(request) -> bool:
        if request.method != "GET" or not request.path.split("?")[0].endswith(key):
            return False
        ranged = request.headers.get("range", "")
        return ranged.startswith("bytes=") and not ranged.startswith("bytes=0-") if second else not ranged \
            or ranged.startswith("bytes=0-")
    return match


def test_a_pull_overtaken_by_a_push_records_the_version_it_got(clones_on_standin):
    """The download got the newer bytes (same size): the record takes the ETag S3
    answered the download with, not the listing's, so nothing is a conflict after."""
    standin, (project, colleague) = clones_on_standin
    project.write("x.csv", "v1,aaaa\n")
    ok(project.run("data", "push"))
    standin.hold(lambda r: r.method == "GET" and r.path.split("?")[0].endswith("/x.csv"))
    with colleague.start("data", "pull") as pulling:
        wait_until(lambda: standin.held, "held download")
        project.write("x.csv", "v2,bbbb\n")  # same size
        ok(project.run("data", "push"))
        standin.release()
        result = pulling.finish(timeout=120)

    ok(result)
    assert colleague.files() == {"x.csv": b"v2,bbbb\n"}
    report = json.loads(ok(colleague.run("data", "status", "--json")).stdout)
    assert report["conflicts"] == {} and report["pull"]["changed"] == [] and report["push"]["changed"] == []


def test_a_big_file_pushed_over_while_it_is_pulled_in_parts_never_lands_as_a_mix(clones_on_standin):
    standin, (project, colleague) = clones_on_standin
    first = os.urandom(12 * MiB)
    project.write("big.bin", first)
    ok(project.run("data", "push"))
    second = bytes(reversed(first))  # same size: the listing cannot tell
    standin.hold(_ranged_get("/big.bin", second=True))
    with colleague.start("data", "pull") as pulling:
        wait_until(lambda: standin.held, "held second part")
        project.write("big.bin", second)
        ok(project.run("data", "push"))
        standin.release()
        result = pulling.finish(timeout=120)

    text = assert_clean_error(result, code=2)
    assert "data/big.bin (it changed on S3 while it was downloaded (its parts came from two versions); pull again)" \
        in text
    assert colleague.files() == {}  # no mix of the two versions
    ok(colleague.run("data", "pull"))
    assert colleague.files() == {"big.bin": second}
