"""conditions.py and the plugin's verdicts: what the answers to conditional writes mean, what is
remembered of them, and what a run's events say."""
import json

import pytest


@pytest.mark.parametrize("status, code, message, matching, expected", [
    (200, "", "", True, "done"),
    (412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", True, "refused"),
    (412, "", "", False, "refused"),  # no body: botocore's code is the status
    (404, "NoSuchKey", "", True, "refused"),  # If-Match on a key deleted meanwhile (AWS)
    (404, "NoSuchBucket", "", True, None),
    (409, "ConditionalRequestConflict", "", False, "refused"),  # after the retries
    (409, "OperationAborted", "", False, None),
    (501, "NotImplemented", "A header you provided implies functionality that is not implemented", False,
     "unsupported"),
    (400, "NotImplemented", "", True, "unsupported"),
    (400, "InvalidArgument", "Unsupported header 'If-None-Match' received", False, "unsupported"),
    (400, "InvalidArgument", "Invalid storage class", False, None),
    (400, "InvalidPart", "One or more of the specified parts could not be found; the specified ETag may not "
     "match", True, None),
    (403, "AccessDenied", "", True, None),
    (500, "InternalError", "", True, None),
])
def test_what_a_response_to_a_conditional_write_means(status, code, message, matching, expected):
    from datakit_data.engine.plugin import verdict

    assert verdict(status, code, message, matching) == expected


def test_refused_uploads_are_told_apart_from_other_lines_of_the_aws_cli():
    from datakit_data.engine.cli import refusal_line

    line = ("upload failed: data/a b.csv to s3://bkt/p/a b.csv An error occurred (PreconditionFailed) when "
            "calling the PutObject operation: At least one of the pre-conditions you specified did not hold")
    assert refusal_line(line) == ("a b.csv", "PreconditionFailed")
    assert refusal_line("upload failed: data/d/x to s3://b/d/x An error occurred (412) when calling the "
                        "CompleteMultipartUpload operation: Precondition Failed") == ("d/x", "412")
    # The server's own message cannot pass a failure off as a refusal.
    spoof = ("upload failed: data/x to s3://b/x An error occurred (AccessDenied) when calling the PutObject "
             "operation: An error occurred (PreconditionFailed) when calling the PutObject operation")
    assert refusal_line(spoof) == ("x", "AccessDenied")
    assert refusal_line("warning: Skipping file /x. File does not exist.") is None
    assert refusal_line("fatal error: An error occurred (NoSuchBucket) when calling the ListObjectsV2") is None


def test_a_runs_events_are_read_back_for_its_own_keys_and_nothing_else(tmp_path):
    from datakit_data.conditions import Guard
    from datakit_data.engine.cli import read_events
    from datakit_data.settings import Settings

    settings = Settings(bucket="bkt", path="proj", profile=None, endpoint_url=None)
    events = tmp_path / "events.jsonl"
    guard = Guard(settings, {"a.csv": "e1", "b.csv": None, "c.csv": "e3"}, ("create", "replace", "delete"))
    assert guard.message() == {"expect": {"proj/a.csv": "e1", "proj/b.csv": None, "proj/c.csv": "e3"},
                               "probe": ["create", "replace"]}  # deletes are probed by datakit itself
    events.write_text(
        '{"event": "loaded", "cli": "aws-cli/2.9.19\\u001b[31m", "plugin": 2}\n'
        '{"event": "note", "text": "preferred_transfer_client = crt"}\n'
        '{"event": "started", "key": "proj/a.csv", "op": "upload"}\n'
        '{"event": "done", "key": "proj/a.csv", "etag": "e9", "version_id": "v9", "checksums": {}, "bytes": 3}\n'
        '{"event": "received", "key": "proj/r.csv", "etag": "e7", "version_id": "", "bytes": 3}\n'
        '{"event": "refused", "key": "proj/b.csv", "code": "PreconditionFailed", "condition": "If-None-Match"}\n'
        '{"event": "refused", "key": "proj/other.csv", "code": "PreconditionFailed"}\n'  # not guarded
        '{"event": "done", "key": "elsewhere/x", "etag": "e"}\n'  # not ours
        '{"event": "changed", "key": "proj/d.bin", "code": "ChangedWhileSent"}\n'
        '{"event": "failed", "key": "proj/f.bin", "code": "AccessDenied", "status": 403}\n'
        '{"event": "probe", "probe": "replace", "key": "proj/a.csv", "result": "proven", "code": "PreconditionFailed"}\n'
        '{"event": "probe", "probe": "delete", "key": "proj/a.csv", "result": "proven", "code": "412"}\n'  # not asked
        '["not", "an", "entry"]\n'
        '{"event": "unsupported", "key": "proj/c.csv", "code": "NotImpl'  # cut short by a kill
    )
    found = read_events(str(events), "proj/", guard.expect, guard.probe)
    assert found.loaded == "aws-cli/2.9.19\\x1b[31m" and found.notes == ["preferred_transfer_client = crt"]
    assert found.sent == {"a.csv": "e9"} and found.versions == {"a.csv": "v9"}
    assert found.received == {"r.csv": "e7"}
    assert found.refused == {"b.csv": "PreconditionFailed"}
    assert found.changed == {"d.bin": "ChangedWhileSent"} and found.failed == {"f.bin": "AccessDenied"}
    assert found.probes == {"replace": ("proven", "PreconditionFailed")}
    assert found.unsupported == {} and found.explains("b.csv", "PreconditionFailed")
    assert found.explains("d.bin", "ChangedWhileSent")
    assert not found.explains("a.csv", "PreconditionFailed") and not found.explains("b.csv", "AccessDenied")


@pytest.mark.parametrize("status, code, kind, expected", [
    (412, "PreconditionFailed", "replace", "proven"),
    (412, "PreconditionFailed", "create", "proven"),
    (404, "NoSuchKey", "replace", "proven"),  # AWS, for If-Match on a key deleted meanwhile
    (404, "NoSuchKey", "create", None),
    (200, "", "replace", "ignored"),
    (200, "", "create", "ignored"),
    (501, "NotImplemented", "create", "unsupported"),
    (409, "ConditionalRequestConflict", "replace", None),  # a race: shows nothing
    (400, "BadDigest", "create", None),  # the create probe's wrong Content-MD5 alone
    (500, "InternalError", "replace", None),
])
def test_what_the_answer_to_a_probe_proves(status, code, kind, expected):
    from datakit_data.engine.plugin import probe_verdict

    assert probe_verdict(status, code, "", kind) == expected


def test_what_a_store_showed_is_remembered_per_endpoint_and_per_kind(tmp_path):
    from datakit_data.conditions import Memory, protection
    from datakit_data.layout import Layout
    from datakit_data.settings import Settings

    layout = Layout(str(tmp_path))
    one = Settings(bucket="bkt", path="p", profile=None, endpoint_url="http://127.0.0.1:1")
    other = Settings(bucket="bkt", path="p", profile=None, endpoint_url="http://127.0.0.1:2")
    fresh = protection(Memory(layout), one, without_hooks="")
    assert {kind: value["mode"] for kind, value in fresh.items()} == {
        "create": "checked after upload only", "replace": "checked after upload only",
        "delete": "checked just before"}
    assert all("not yet proven" in value["why"] for value in fresh.values())
    assert Memory(layout).learn(one, "create", "unsupported", "NotImplemented") is True
    assert Memory(layout).learn(one, "create", "unsupported", "NotImplemented") is False  # said once
    assert Memory(layout).learn(other, "replace", "proven", "PreconditionFailed") is True
    assert Memory(layout).learn(other, "delete", "ignored", "deleted") is True
    assert not Memory(layout).supported(one, "create") and Memory(layout).supported(one, "replace")
    assert Memory(layout).supported(other, "create")
    found = protection(Memory(layout), other, without_hooks="")
    assert found["replace"]["mode"] == "compare-and-swap"
    assert found["replace"]["why"].startswith("proven: the server refused an upload sent with a deliberately wrong "
                                              "If-Match (PreconditionFailed, ")
    assert found["create"]["mode"] == "checked after upload only"  # each kind on its own
    assert found["delete"]["mode"] == "checked just before" and "ignored" in found["delete"]["why"]
    assert protection(Memory(layout), other, without_hooks="DATAKIT_DATA_AWS runs another AWS CLI")["replace"]["mode"] == "checked after upload only"
    assert protection(Memory(layout), other, without_hooks="DATAKIT_DATA_AWS runs another AWS CLI")["delete"]["mode"] == "checked just before"
    (tmp_path / ".datakit-data" / "conditions.json").write_text("{not json")
    assert Memory(layout).supported(one, "create")  # damaged: learned again
    # What an older datakit remembered (from its own checks too) is not taken on trust.
    (tmp_path / ".datakit-data" / "conditions.json").write_text(json.dumps(
        {"http://127.0.0.1:2 bucket bkt": {"writes": "enforced", "deletes": "enforced"}}))
    assert protection(Memory(layout), other, without_hooks="")["replace"]["mode"] == "checked after upload only"


def test_a_file_is_known_to_hold_the_parts_it_was_sent_in(tmp_path):
    import hashlib

    from datakit_data.engine.plugin import digest as _digest, holds as _holds

    path = tmp_path / "f"
    path.write_bytes(b"abcdefghij")
    parts = [(hashlib.md5(b"abcd").digest(), 4), (hashlib.md5(b"efgh").digest(), 4), (hashlib.md5(b"ij").digest(), 2)]
    assert _holds(str(path), parts)
    assert not _holds(str(path), parts[:2])  # more bytes than were sent
    path.write_bytes(b"abcdXfghij")
    assert not _holds(str(path), parts)
    assert not _holds(str(tmp_path / "gone"), parts)
    with open(path, "rb") as fh:
        fh.seek(3)
        assert _digest(fh) == (hashlib.md5(b"dXfghij").digest(), 7) and fh.tell() == 3  # put back
