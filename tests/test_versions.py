"""History on buckets that keep versions; plain answers on buckets that do not."""
import json
import subprocess

import pytest

from conftest import Bucket, _client, assert_clean_error, ok

VERSIONED = "datakit-versioned"


@pytest.fixture(scope="session")
def versioned(s3):
    """A second bucket, with versioning on."""
    client = _client(s3.endpoint_url)
    client.create_bucket(Bucket=VERSIONED)
    client.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    return Bucket(client, VERSIONED)


def test_history_lists_versions_with_who_pushed_them_and_deletions(project, versioned):
    project.configure(s3_bucket=VERSIONED)
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    subprocess.run(["git", "-C", str(project.root), "config", "user.name", "Ana Lyst"], check=True)
    for text in ("one\n", "two, longer\n", "three, longest\n"):
        project.write("story.csv", text)
        ok(project.run("data", "push"))
    project.write("gone.csv", "g")
    ok(project.run("data", "push"))
    (project.data / "gone.csv").unlink()
    ok(project.run("data", "push", "delete"))

    report = json.loads(ok(project.run("data", "history", "data/story.csv", "--json")).stdout)
    sizes = [v["size"] for v in report["versions"]]
    assert sizes == [15, 12, 4] and report["total"] == 3
    assert {v["pushed_by"] for v in report["versions"]} == {"Ana Lyst"}
    assert [v["latest"] for v in report["versions"]] == [True, False, False]

    folder = json.loads(ok(project.run("data", "history", "--json")).stdout)
    gone = [v for v in folder["versions"] if v["path"] == "gone.csv"]
    assert [v["deleted"] for v in gone] == [True, False]
    text = ok(project.run("data", "history", "--limit", "2")).stdout
    assert "deleted" in text and "data/gone.csv" in text and "older version(s) not shown" in text
    assert "versions: kept by the bucket" in ok(project.run("data", "status")).stdout


def test_an_unversioned_bucket_says_so(project, bucket):
    project.configure()
    project.write("a.csv", "a")
    ok(project.run("data", "push"))
    project.write("a.csv", "a, changed")

    pushed = ok(project.run("data", "push"))

    assert "cannot be undone" in pushed.stderr and "put-bucket-versioning" in pushed.stderr
    text = assert_clean_error(project.run("data", "history"))
    assert "keeps no versions" in text and "put-bucket-versioning --bucket datakit-test" in text
    assert "versions: not kept" in ok(project.run("data", "status")).stdout
    quiet = ok(project.run("data", "push"))  # nothing overwritten: nothing to say
    assert "cannot be undone" not in quiet.stderr
