"""Colleagues pushing at the same moment: no acknowledged push is ever lost.

Each race is forced, not hoped for: one clone reaches S3 through a stand-in proxy
(s3standin.py) that holds its first upload (or delete) after it has planned, the
other clone pushes from start to end, then the held request goes on.
"""
import json

import pytest

from helpers import BUCKET, VERSIONED, Project, assert_clean_error, ok, wait_until
from s3standin import StandIn

MiB = 1024 * 1024


@pytest.fixture
def clones(tmp_path, home, standin):
    """Two clones of one project (the one that pushes first, the one that pulls), both
    reaching S3 through the stand-in."""
    first = Project(tmp_path / "first" / "shared-project", home)
    second = Project(tmp_path / "second" / "shared-project", home)
    for clone in (first, second):
        clone.configure(s3_path=f"race-{tmp_path.name}", s3_endpoint_url=standin.endpoint_url)
    return first, second


HELD = b"held's edit"


def _held_upload(request) -> bool:
    """The first request that carries the held clone's bytes (a PutObject or a part)."""
    return request.method == "PUT" and HELD in request.body


def _content(who: bytes, size: int) -> bytes:
    return (who * (size // len(who) + 1))[:size]


def _while_held(standin, match, clone, words, meanwhile):
    """Run `datakit data WORDS` in clone until the stand-in holds a request ``match``
    picks, run ``meanwhile()``, let the request go on: (the held run, meanwhile's result)."""
    standin.hold(match)
    with clone.start("data", *words) as held:
        wait_until(lambda: standin.held, "held request")
        other = meanwhile()
        standin.release()
        return held.finish(timeout=120), other


RACES = [(held, kind, size, BUCKET) for held in ("pusher", "puller") for kind in ("new", "changed")
         for size in (40, 9 * MiB)]
RACES += [("pusher", "changed", size, VERSIONED) for size in (40, 9 * MiB)]  # a bucket that keeps versions


@pytest.mark.parametrize("held, kind, size, bucket_name", RACES, ids=[
    f"{held}-{kind}-{'multipart' if size > MiB else 'single-part'}-{'versioned' if name == VERSIONED else 'plain'}"
    for held, kind, size, name in RACES])
def test_of_two_pushes_planned_together_exactly_one_lands(clones, standin, versioned, bucket, kind, size, held,
                                                          bucket_name):
    for clone in clones:
        clone.configure(**{**clone.config(), "s3_bucket": bucket_name})
    if kind == "changed":
        clones[0].write("x.csv", "v1\n")
        ok(clones[0].run("data", "push"))
        ok(clones[1].run("data", "pull"))
    # One plans and is held at its first upload request; the other pushes start to end meanwhile.
    loser, winner = clones if held == "pusher" else reversed(clones)
    loser.write("x.csv", _content(HELD, size + 1))
    winner.write("x.csv", _content(b"other's edit", size))
    store = versioned if bucket_name == VERSIONED else bucket
    prefix = loser.config()["s3_path"]

    lost, won = _while_held(standin, _held_upload, loser, ["push"], lambda: winner.run("data", "push"))

    ok(won)
    text = assert_clean_error(lost)
    assert ("conflict: data/x.csv (S3 holds another version: someone pushed data/x.csv after this push "
            "planned it)") in text
    assert "`datakit data compare`" in text and "Pull, then push again" not in text
    assert store.objects(prefix) == {"x.csv": _content(b"other's edit", size)}
    assert not store.client.list_multipart_uploads(Bucket=store.name, Prefix=prefix).get("Uploads")
    # The loser's edit is not lost: a pull names it as a conflict and leaves it.
    assert "conflict: data/x.csv" in assert_clean_error(loser.run("data", "pull"))
    assert loser.files() == {"x.csv": _content(HELD, size + 1)}
    assert json.loads(ok(loser.run("data", "status", "--json")).stdout)["conflicts"] == {
        "x.csv": "changed on both sides" if kind == "changed" else "differs, and there is no sync record yet"}


@pytest.mark.parametrize("kind", ["new", "changed"])
def test_on_a_store_that_keeps_keys_as_given_one_push_lands_too(tmp_path, home, moto, moto_bucket, kind):
    # moto stores keys exactly as AWS S3 does; it honours conditions on PutObject
    # (not on CompleteMultipartUpload, so only single-part uploads are shown here).
    with StandIn(moto.ports["port"]) as standin:
        clones = [Project(tmp_path / name / "shared-project", home) for name in ("first", "second")]
        for clone in clones:
            clone.configure(s3_path=f"race moto/..odd-{kind}", s3_endpoint_url=standin.endpoint_url)
        if kind == "changed":
            clones[0].write("x y.csv", "v1\n")
            ok(clones[0].run("data", "push"))
            ok(clones[1].run("data", "pull"))
        loser, winner = clones
        loser.write("x y.csv", HELD + b"\n")
        winner.write("x y.csv", "other's edit\n")

        lost, won = _while_held(standin, _held_upload, loser, ["push"], lambda: winner.run("data", "push"))

    ok(won)
    assert "conflict: data/x y.csv (S3 holds another version" in assert_clean_error(lost)
    assert moto_bucket.objects(f"race moto/..odd-{kind}") == {"x y.csv": b"other's edit\n"}
    assert loser.files() == {"x y.csv": HELD + b"\n"}


def _is_batch_delete(request) -> bool:
    return request.method == "POST" and "delete" in request.query


def test_a_push_planned_before_a_delete_of_the_same_file_is_a_conflict_and_keeps_the_edit(clones, standin, bucket):
    pusher, deleter = clones
    pusher.write("x.csv", "v1\n")
    ok(pusher.run("data", "push"))
    ok(deleter.run("data", "pull"))
    pusher.write("x.csv", HELD + b", v2\n")
    prefix = pusher.config()["s3_path"]

    (deleter.data / "x.csv").unlink()
    result, deleted = _while_held(standin, _held_upload, pusher, ["push"],
                                  lambda: deleter.run("data", "push", "delete"))

    ok(deleted)

    text = assert_clean_error(result)
    assert "conflict: data/x.csv (S3 no longer holds the version this push planned over" in text or (
        "conflict: data/x.csv (S3 holds another version: someone pushed data/x.csv after this push" in text)
    assert bucket.objects(prefix) == {}
    assert pusher.files() == {"x.csv": HELD + b", v2\n"}  # the edit waits, named as a conflict
    pulled = assert_clean_error(pusher.run("data", "pull"))
    assert "conflict: data/x.csv (deleted on S3 but changed locally)" in pulled
    ok(pusher.run("data", "push", "force"))
    assert bucket.objects(prefix) == {"x.csv": HELD + b", v2\n"}


def test_a_delete_planned_before_a_push_of_the_same_file_leaves_the_new_version(clones, standin, bucket):
    deleter, pusher = clones
    deleter.write("x.csv", "v1\n")
    deleter.write("keep.csv", "k\n")
    ok(deleter.run("data", "push"))
    ok(pusher.run("data", "pull"))
    (deleter.data / "x.csv").unlink()
    prefix = deleter.config()["s3_path"]

    pusher.write("x.csv", "v2, the pusher's\n")
    result, pushed = _while_held(standin, _is_batch_delete, deleter, ["push", "delete"],
                                 lambda: pusher.run("data", "push"))

    ok(pushed)

    text = assert_clean_error(result)
    assert ("conflict: data/x.csv (S3 holds another version: someone pushed data/x.csv after this push "
            "planned to delete it)") in text
    assert bucket.objects(prefix) == {"x.csv": b"v2, the pusher's\n", "keep.csv": b"k\n"}
    ok(deleter.run("data", "pull"))  # deleted here, changed on S3: brought back
    assert deleter.files() == {"x.csv": b"v2, the pusher's\n", "keep.csv": b"k\n"}
    status = ok(deleter.run("data", "status")).stdout
    assert ("concurrent pushes, deletions: compare-and-swap: proven: the server refused a delete sent with a "
            "deliberately wrong ETag (PreconditionFailed, ") in status


def _conditional_write(request) -> bool:
    return request.method in ("PUT", "POST") and ("if-match" in request.headers or "if-none-match" in request.headers)


@pytest.mark.parametrize("size", [40, 9 * MiB], ids=["single-part", "multipart"])
def test_a_store_without_conditional_writes_still_pushes_and_says_so_once(clones, standin, bucket, size):
    project = clones[0]
    prefix = project.config()["s3_path"]
    standin.answer(_conditional_write, 501, "NotImplemented")
    project.write("a.csv", _content(b"a", size))
    project.write("b.csv", "b\n")

    first = ok(project.run("data", "push"))

    assert "does not support conditional writes (If-None-Match; it answered NotImplemented)" in first.stderr
    assert "This push's new files are checked after upload only: the server refused If-None-Match" in first.stderr
    assert "Push: 2 file(s) sent" in first.stdout
    assert bucket.objects(prefix) == {"a.csv": _content(b"a", size), "b.csv": b"b\n"}
    # Each kind is learned on its own: the first push that changes files learns If-Match.
    project.write("b.csv", "b, edited\n")
    second = ok(project.run("data", "push"))
    assert "does not support conditional writes (If-Match; it answered NotImplemented)" in second.stderr
    assert bucket.objects(prefix)["b.csv"] == b"b, edited\n"
    # Remembered for that endpoint: the next push sends no conditions and says nothing more.
    project.write("b.csv", "b, edited again\n")
    project.write("c.csv", "c\n")
    asked = len(standin.seen)
    third = ok(project.run("data", "push"))
    assert "does not support" not in third.stderr
    assert ("This push's changed files and new files are checked after upload only: the server refused If-Match "
            "itself (NotImplemented, ") not in third.stderr  # (two kinds, two reasons: said apart)
    assert "This push's changed files are checked after upload only: the server refused If-Match itself" \
        in third.stderr
    assert "This push's new files are checked after upload only: the server refused If-None-Match" in third.stderr
    assert not [r for r in standin.seen[asked:] if _conditional_write(r)]
    assert bucket.objects(prefix)["b.csv"] == b"b, edited again\n"
    status = ok(project.run("data", "status")).stdout
    assert ("concurrent pushes, changed files: checked after upload only: the server refused If-Match itself "
            "(NotImplemented, ") in status
    assert ("concurrent pushes, new files: checked after upload only: the server refused If-None-Match itself "
            "(NotImplemented, ") in status


def test_a_store_without_conditional_deletes_checks_each_object_just_before(clones, standin, bucket):
    project = clones[0]
    prefix = project.config()["s3_path"]
    project.write("a.csv", "a\n")
    project.write("b.csv", "b\n")
    ok(project.run("data", "push"))
    (project.data / "a.csv").unlink()
    standin.answer(lambda r: _is_batch_delete(r) and b"<ETag>" in r.body, 501, "NotImplemented")

    result = ok(project.run("data", "push", "delete"))

    assert "does not support conditional deletes (the ETags of a batch delete; it answered NotImplemented)" \
        in result.stderr
    assert "1 deleted" in result.stdout
    assert bucket.objects(prefix) == {"b.csv": b"b\n"}


@pytest.mark.parametrize("refusals, lands", [(2, True), (None, False)], ids=["twice", "always"])
def test_two_conditional_writes_racing_are_tried_again_then_a_conflict(clones, standin, bucket, refusals, lands):
    # AWS S3 answers 409 ConditionalRequestConflict when another conditional write to
    # the key is in flight: the write is tried again a few times.
    project = clones[0]
    prefix = project.config()["s3_path"]
    standin.answer(lambda r: r.method == "PUT" and _conditional_write(r), 409, "ConditionalRequestConflict",
                   times=refusals)
    project.write("a.csv", "a\n")

    result = project.run("data", "push")

    tries = [r for r in standin.seen if r.method == "PUT" and r.key.endswith("/a.csv")]
    if lands:
        ok(result)
        assert bucket.objects(prefix) == {"a.csv": b"a\n"} and len(tries) == 3
    else:
        # Still racing after 4 tries, with nothing else there: not a conflict (pulling would
        # change nothing), a file to push again; and no proof of anything about the store.
        text = assert_clean_error(result, code=2)
        assert ("data/a.csv (S3 answered ConditionalRequestConflict (another write to it in flight) to every try "
                "and still holds the version this push planned over; push again in a moment)") in text
        assert "conflict: data/a.csv" not in text and "0 conflict(s)" in text
        assert bucket.objects(prefix) == {} and len(tries) == 4
        assert "new files: compare-and-swap" not in ok(project.run("data", "status")).stdout


@pytest.mark.parametrize("aws", ["bundled", "another"])
def test_an_upload_deleted_right_after_it_landed_is_a_conflict(clones, standin, bucket, tmp_path, aws):
    import stat
    import sys

    project = clones[0]
    prefix = project.config()["s3_path"]
    env = {}
    if aws == "another":  # no conditions: what the AWS CLI ended well on is what it sent
        wrapper = tmp_path / "aws"
        wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m awscli \"$@\"\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        env = {"DATAKIT_DATA_AWS": str(wrapper)}
    project.write("x.csv", "mine\n")

    def check_after(request):  # the HEAD of the check after upload
        return request.method == "HEAD" and request.key == f"{prefix}/x.csv"

    standin.hold(check_after)
    with project.start("data", "push", env=env) as pushing:
        wait_until(lambda: standin.held, "held check")
        bucket.delete(f"{prefix}/x.csv")  # a colleague's push delete lands now
        standin.release()
        result = pushing.finish(timeout=120)

    text = assert_clean_error(result)
    assert ("conflict: data/x.csv (S3 no longer holds it: someone deleted data/x.csv right after this push "
            "sent it; a push sends it anew)") in text
    assert project.files() == {"x.csv": b"mine\n"}
    assert json.loads(ok(project.run("data", "status", "--json")).stdout)["push"]["new"] == ["x.csv"]


def test_a_store_that_refuses_every_conditional_write_wrongly_is_named_and_then_pushed_to_plainly(
        clones, standin, bucket):
    project = clones[0]
    prefix = project.config()["s3_path"]
    standin.answer(_conditional_write, 412, "PreconditionFailed")  # a proxy that answers 412 to all
    project.write("a.csv", "a\n")

    first = project.run("data", "push")

    text = assert_clean_error(first, code=2)
    assert "data/a.csv (S3 refused its conditional upload yet still holds the version this push planned" in text
    assert bucket.objects(prefix) == {}
    second = ok(project.run("data", "push"))  # remembered: no conditions there any more
    assert ("This push's new files are checked after upload only: the server refused If-None-Match itself "
            "(412 on an unchanged object, ") in second.stderr
    assert bucket.objects(prefix) == {"a.csv": b"a\n"}


def test_another_failure_beside_a_refused_upload_still_fails_the_push(clones, standin, bucket):
    project = clones[0]
    prefix = project.config()["s3_path"]
    standin.answer(lambda r: r.method == "PUT" and r.key.endswith("/refused.csv"), 412, "PreconditionFailed")
    standin.answer(lambda r: r.method == "PUT" and r.key.endswith("/denied.csv"), 400, "InvalidRequest")
    project.write("refused.csv", "r\n")
    project.write("denied.csv", "d\n")
    project.write("fine.csv", "f\n")

    result = project.run("data", "push")

    text = assert_clean_error(result)
    assert "upload failed: data/denied.csv" in text and "InvalidRequest" in text
    assert bucket.objects(prefix) == {"fine.csv": b"f\n"}
    report = json.loads(ok(project.run("data", "status", "--json")).stdout)
    assert set(report["push"]["new"]) == {"refused.csv", "denied.csv"}  # neither recorded
