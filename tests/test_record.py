"""record.py: the sync record on disk, version 2 (columns) and version 1 (an object per file)."""
import json
import logging

import pytest

from helpers import make_settings

from datakit_data.layout import Layout
from datakit_data.plan import Local, Recorded
from datakit_data.record import SyncRecord, location


@pytest.fixture
def layout(tmp_path):
    (tmp_path / ".datakit-data").mkdir()
    return Layout(str(tmp_path))


def _write(layout, version, files):
    target = location(make_settings())
    with open(layout.record, "w") as fh:
        json.dump({"version": version, "target": target, "last": {"push": "2026-12-01T10:00:00+00:00"},
                   "files": files}, fh)


def test_a_record_is_saved_as_columns_and_read_back_the_same(layout):
    record = SyncRecord.load(layout, make_settings())
    record.set("a.csv", Local(3, 10, 7), "e1")
    record.set("caf\u00e9/b.csv", Local(0, 11, 8), "e2-2")
    record.stamp("push")
    record.save()

    on_disk = json.loads(open(layout.record).read())
    assert on_disk["version"] == 2
    assert on_disk["files"] == {"path": ["a.csv", "caf\u00e9/b.csv"], "size": [3, 0], "mtime_ns": [10, 11],
                                "ino": [7, 8], "etag": ["e1", "e2-2"]}
    again = SyncRecord.load(layout, make_settings())
    assert again.exists and again.files == {"a.csv": Recorded(3, 10, 7, "e1"),
                                            "caf\u00e9/b.csv": Recorded(0, 11, 8, "e2-2")}
    assert again.last == record.last


def test_an_empty_record_is_read_back_empty(layout):
    SyncRecord.load(layout, make_settings()).save()
    again = SyncRecord.load(layout, make_settings())
    assert again.exists and again.files == {}


def test_a_version_1_record_is_read_and_the_next_save_writes_version_2(layout):
    _write(layout, 1, {"a.csv": {"size": 3, "mtime_ns": 10, "ino": 7, "etag": "e1"},
                       "old.csv": {"size": 1, "mtime_ns": 5, "etag": "e0"}})  # before inodes were kept

    record = SyncRecord.load(layout, make_settings())

    assert record.files == {"a.csv": Recorded(3, 10, 7, "e1"), "old.csv": Recorded(1, 5, None, "e0")}
    assert record.last == {"push": "2026-12-01T10:00:00+00:00"}
    record.save()
    on_disk = json.loads(open(layout.record).read())
    assert on_disk["version"] == 2 and on_disk["files"]["ino"] == [7, None]
    assert SyncRecord.load(layout, make_settings()).files == record.files


@pytest.mark.parametrize("files, why", [
    ({"path": ["a"], "size": [1], "mtime_ns": [1], "ino": [1]}, "is not an object of the lists"),
    ({"path": ["a"], "size": [1], "mtime_ns": [1], "ino": [1], "etag": "e"}, "is not an object of the lists"),
    ({"path": ["a", "b"], "size": [1], "mtime_ns": [1], "ino": [1], "etag": ["e"]}, "lists of different lengths"),
    ({"path": ["a"], "size": [True], "mtime_ns": [1], "ino": [1], "etag": ["e"]}, 'the "size" list of "files" holds something other than whole numbers'),
    ({"path": ["a"], "size": [1], "mtime_ns": [1.5], "ino": [1], "etag": ["e"]}, 'the "mtime_ns" list'),
    ({"path": ["a"], "size": [1], "mtime_ns": [1], "ino": ["7"], "etag": ["e"]}, 'the "ino" list'),
    ({"path": [1], "size": [1], "mtime_ns": [1], "ino": [1], "etag": ["e"]}, 'the "path" list of "files" holds something other than texts'),
    ({"path": ["a"], "size": [1], "mtime_ns": [1], "ino": [1], "etag": [None]}, 'the "etag" list'),
    ({"path": ["a", "a"], "size": [1, 2], "mtime_ns": [1, 1], "ino": [1, 1], "etag": ["e", "f"]}, "a path twice"),
    ([["a", 1, 1, 1, "e"]], "is not an object of the lists"),
])
def test_a_damaged_version_2_record_is_named_and_treated_as_none(layout, caplog, files, why):
    _write(layout, 2, files)
    with caplog.at_level(logging.WARNING):
        record = SyncRecord.load(layout, make_settings())
    assert not record.exists and record.files == {}
    assert f"{layout.record} is damaged" in caplog.text and why in caplog.text.replace("\n", " ")


def test_a_record_of_a_newer_version_is_named_and_not_read(layout, caplog):
    _write(layout, 3, {})
    with caplog.at_level(logging.WARNING):
        assert SyncRecord.load(layout, make_settings()).files == {}
    assert "not a sync record of this version" in caplog.text
