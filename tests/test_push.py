"""push.py: the verdict of the check after upload."""
import pytest

from datakit_data.plan import Remote
from datakit_data.push import (
    BUSY, CHANGED_LOCALLY, CONFLICTS, DELETED_MEANWHILE, GONE_AFTER_UPLOAD, NOT_UPLOADED, RACED, RECORDED,
    SENT_CHANGED, SKIPS, SOMEONE_ELSES, WORDS, WRONG_REFUSAL, same_object, upload_verdict,
)


def test_the_same_object_is_known_by_its_second_whether_listed_with_milliseconds_or_not():
    listed = Remote(5, "e1", "2026-11-14T15:30:07.412Z")  # MinIO, Ceph
    assert same_object(Remote(5, "e1", "Sat, 14 Nov 2026 15:30:07 GMT"), listed)  # a HEAD
    assert same_object(Remote(5, "e1", "2026-11-14T15:30:07.412Z"), listed)
    assert not same_object(Remote(5, "e1", "Sat, 14 Nov 2026 15:30:08 GMT"), listed)
    assert not same_object(Remote(5, "e2", "Sat, 14 Nov 2026 15:30:07 GMT"), listed)


PLANNED = Remote(5, "old", "2026-11-14T15:30:07Z")
OURS = Remote(6, "ours", "2026-11-14T15:31:00Z")
THEIRS = Remote(7, "theirs", "2026-11-14T15:31:02Z")


@pytest.mark.parametrize("planned, now, asked, expected", [
    # S3 holds our bytes: recorded, refused or not (a retried write that had landed).
    (PLANNED, OURS, {}, RECORDED),
    (None, OURS, {"refusal": "PreconditionFailed"}, RECORDED),
    # An ETag that is not the MD5 of the content (SSE-KMS) cannot be compared: recorded.
    (PLANNED, THEIRS, {"etag_is_md5": False}, RECORDED),
    # Nothing there, or the planned object still: nothing was uploaded.
    (None, None, {}, NOT_UPLOADED),
    (PLANNED, PLANNED, {}, NOT_UPLOADED),
    # Sent, then gone: someone deleted it right after.
    (None, None, {"sent": True}, GONE_AFTER_UPLOAD),
    # Refused under its condition: someone pushed, or deleted, meanwhile.
    (PLANNED, THEIRS, {"refusal": "PreconditionFailed"}, RACED),
    (None, THEIRS, {"refusal": "412"}, RACED),
    (PLANNED, None, {"refusal": "NoSuchKey"}, DELETED_MEANWHILE),
    (PLANNED, None, {"refusal": "PreconditionFailed"}, DELETED_MEANWHILE),  # SeaweedFS's word for it
    (PLANNED, THEIRS, {"refusal": "ConditionalRequestConflict"}, RACED),
    # Refused, yet S3 holds what the plan saw: the refusal was wrong.
    (PLANNED, PLANNED, {"refusal": "PreconditionFailed"}, WRONG_REFUSAL),
    (None, None, {"refusal": "412"}, WRONG_REFUSAL),
    # 409 to every try, nothing changed there: a file to push again, not a conflict.
    (PLANNED, PLANNED, {"refusal": "ConditionalRequestConflict"}, BUSY),
    (None, None, {"refusal": "ConditionalRequestConflict"}, BUSY),
    # Stopped because the file changed as it was sent, before S3 took any of it.
    (PLANNED, PLANNED, {"changed": True}, CHANGED_LOCALLY),
    (None, None, {"changed": True}, CHANGED_LOCALLY),
    # S3 holds whole bytes this push sent, which the file no longer holds.
    (PLANNED, THEIRS, {"sent": True, "sent_etag": "theirs"}, SENT_CHANGED),
    # Another version, not refused: someone else's, unless the file changed here meanwhile.
    (PLANNED, THEIRS, {}, SOMEONE_ELSES),
    (PLANNED, THEIRS, {"as_scanned": False}, CHANGED_LOCALLY),
])
def test_the_verdict_of_the_check_after_upload(planned, now, asked, expected):
    asked = dict(asked)
    md5, scanned = asked.pop("etag_is_md5", True), asked.pop("as_scanned", True)
    verdict = upload_verdict(planned, now, ours="ours" if now is not None else None,
                             etag_is_md5=lambda: md5, as_scanned=lambda: scanned, **asked)
    assert verdict == expected


def test_every_verdict_that_names_the_file_has_its_words_and_is_a_conflict_or_a_skip():
    named = {SOMEONE_ELSES, CHANGED_LOCALLY, RACED, DELETED_MEANWHILE, GONE_AFTER_UPLOAD, WRONG_REFUSAL, BUSY,
             SENT_CHANGED}
    assert set(WORDS) == named == set(CONFLICTS) | set(SKIPS) and not set(CONFLICTS) & set(SKIPS)
