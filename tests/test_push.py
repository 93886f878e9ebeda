"""push.py: the verdict of the check after upload."""
from datakit_data.plan import Remote
from datakit_data.push import same_object


def test_the_same_object_is_known_by_its_second_whether_listed_with_milliseconds_or_not():
    listed = Remote(5, "e1", "2026-11-14T15:30:07.412Z")  # MinIO, Ceph
    assert same_object(Remote(5, "e1", "Sat, 14 Nov 2026 15:30:07 GMT"), listed)  # a HEAD
    assert same_object(Remote(5, "e1", "2026-11-14T15:30:07.412Z"), listed)
    assert not same_object(Remote(5, "e1", "Sat, 14 Nov 2026 15:30:08 GMT"), listed)
    assert not same_object(Remote(5, "e2", "Sat, 14 Nov 2026 15:30:07 GMT"), listed)
