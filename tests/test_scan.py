"""scan.py: the local ETag, and what the scan could not look at."""
from datakit_data.plan import Recorded, Remote, make_plan
from datakit_data.scan import left_alone, local_etag


def test_local_etag_matches_s3_single_and_multipart(tmp_path):
    import hashlib

    small = tmp_path / "small"
    small.write_bytes(b"hello")
    assert local_etag(str(small)) == hashlib.md5(b"hello").hexdigest()
    big = tmp_path / "big"
    data = bytes(range(256)) * (4096 * 9)  # 9 MiB: two parts of 8 MiB and 1 MiB
    big.write_bytes(data)
    parts = [hashlib.md5(data[:8 * 2**20]).digest(), hashlib.md5(data[8 * 2**20:]).digest()]
    assert local_etag(str(big)) == hashlib.md5(b"".join(parts)).hexdigest() + "-2"
    # A user's own settings: one part of 16 MiB...
    assert local_etag(str(big), 8 * 2**20, 16 * 2**20) == hashlib.md5(hashlib.md5(data).digest()).hexdigest() + "-1"
    # ...or a threshold above the file's size: no parts at all.
    assert local_etag(str(big), 64 * 2**20, 8 * 2**20) == hashlib.md5(data).hexdigest()
    exact = tmp_path / "exact"
    exact.write_bytes(data[:8 * 2**20])  # exactly the threshold: one part
    assert local_etag(str(exact)) == hashlib.md5(hashlib.md5(data[:8 * 2**20]).digest()).hexdigest() + "-1"


def test_what_the_scan_could_not_look_at_is_left_alone_with_everything_under_it():
    record = {p: Recorded(1, 1, None, "e1") for p in ("raw", "raw/x", "rawer", "dir/y", "l/z")}
    remote = {p: Remote(1, "e1") for p in record}
    alone = left_alone({"raw": "a link whose target does not exist", "dir/": "a folder that cannot be read"},
                       unfollowed=["l/"])
    plan = make_plan("push", {}, remote, record, delete=True, unreadable=alone)
    assert plan.delete == ["rawer"]
    assert plan.kept == {
        "raw": "a link whose target does not exist; left as it is",
        "raw/x": "under data/raw/, a link whose target does not exist; left as it is",
        "dir/y": "cannot be read here (see the skipped files); left as it is",
        "l/z": "under a link that is not followed (no-follow-symlinks); left as it is",
    }


def test_the_ways_another_tool_could_have_hashed_a_file_are_few_and_fit_its_etag():
    from datakit_data.scan import MiB, other_shapes

    sizes = (8 * MiB, 8 * MiB)  # the AWS CLI's threshold and chunk
    assert other_shapes(12 * MiB, "a" * 32 + "-3", sizes) == [5 * MiB, 4 * MiB]  # rclone, s5cmd -p 5; or fitted
    assert other_shapes(12 * MiB, "a" * 32 + "-2", sizes) == [10 * MiB, 6 * MiB]  # not 8 MiB: ours
    assert other_shapes(120 * MiB, "a" * 32 + "-3", sizes) == [50 * MiB, 40 * MiB]  # s5cmd's 50 MiB
    assert other_shapes(9 * MiB, "a" * 32, sizes) == [0]  # a store with plain MD5 ETags
    assert other_shapes(1024, "a" * 32, sizes) == []  # below the threshold ours is that MD5
    assert other_shapes(9 * MiB, "a" * 32 + "-1", sizes) == [9 * MiB]
    for etag in ("a" * 32 + "-0", "a" * 32 + "-10001", "not an etag", "A" * 32 + "-2"):
        assert other_shapes(12 * MiB, etag, sizes) == []


def test_a_files_etags_in_other_shapes_are_those_s3_gives_them(tmp_path):
    import hashlib
    import os

    from datakit_data.scan import MiB, etags_of, local_etag

    body = os.urandom(12 * MiB + 7)
    path = tmp_path / "f.bin"
    path.write_bytes(body)

    def multipart(part):
        digests = [hashlib.md5(body[i:i + part]).digest() for i in range(0, len(body), part)]
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"

    assert etags_of(str(path), [0, 5 * MiB, 10 * MiB]) == {
        hashlib.md5(body).hexdigest(), multipart(5 * MiB), multipart(10 * MiB)}
    assert local_etag(str(path)) == multipart(8 * MiB)
