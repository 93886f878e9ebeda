"""conditions.py: what the answers to conditional writes mean, and what is remembered of them."""
import pytest


@pytest.mark.parametrize("status, code, message, matching, expected", [
    (200, "", "", True, "sent"),
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
    from datakit_data.conditions import verdict

    assert verdict(status, code, message, matching) == expected


def test_refused_uploads_are_told_apart_from_other_lines_of_the_aws_cli():
    from datakit_data.conditions import refusal_line

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


def test_the_guard_reads_back_what_the_launcher_reported_and_nothing_else(tmp_path):
    from datakit_data.conditions import Guard
    from datakit_data.settings import Settings

    settings = Settings(bucket="bkt", path="proj", profile=None, endpoint_url=None)
    report = tmp_path / "guard.jsonl"
    guard = Guard(settings, {"a.csv": "e1", "b.csv": None, "c.csv": "e3"}, str(report))
    assert guard.message()["expect"] == {"proj/a.csv": "e1", "proj/b.csv": None, "proj/c.csv": "e3"}
    report.write_text(
        '{"key": "proj/a.csv", "result": "sent", "code": "200"}\n'
        '{"key": "proj/b.csv", "result": "refused", "code": "PreconditionFailed"}\n'
        '{"key": "proj/other.csv", "result": "refused", "code": "PreconditionFailed"}\n'  # not ours
        '["not", "an", "entry"]\n'
        '{"key": "proj/c.csv", "result": "unsupported", "code": "NotImpl'  # cut short by a kill
    )
    found = guard.read()
    assert found.sent == {"a.csv"}
    assert found.refused == {"b.csv": "PreconditionFailed"}
    assert found.unsupported == {} and found.explains("b.csv", "PreconditionFailed")
    assert not found.explains("a.csv", "PreconditionFailed") and not found.explains("b.csv", "AccessDenied")


def test_what_an_endpoint_supports_is_remembered_per_endpoint(tmp_path):
    from datakit_data.conditions import Memory, protection
    from datakit_data.layout import Layout
    from datakit_data.settings import Settings

    layout = Layout(str(tmp_path))
    one = Settings(bucket="bkt", path="p", profile=None, endpoint_url="http://127.0.0.1:1")
    other = Settings(bucket="bkt", path="p", profile=None, endpoint_url="http://127.0.0.1:2")
    assert protection(Memory(layout), one, hooks=True)["why"].endswith("(not yet tried on this server)")
    assert Memory(layout).learn(one, "writes", "unsupported", "NotImplemented") is True
    assert Memory(layout).learn(one, "writes", "unsupported", "NotImplemented") is False  # said once
    assert Memory(layout).learn(other, "writes", "enforced") is False
    assert not Memory(layout).supported(one) and Memory(layout).supported(other)
    assert protection(Memory(layout), one, hooks=True)["mode"] == "checked after upload only"
    assert protection(Memory(layout), other, hooks=True)["why"] == "the server enforces conditional writes"
    assert protection(Memory(layout), other, hooks=False)["mode"] == "checked after upload only"
    (tmp_path / ".datakit-data" / "conditions.json").write_text("{not json")
    assert Memory(layout).supported(one)  # damaged: learned again
