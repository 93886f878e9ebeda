"""`datakit data share`: links for people without AWS (issue 33).

Through the real `datakit` and a SeaweedFS that refuses anonymous requests: the links
are fetched with a plain HTTP client, straight to the server.
"""
import datetime
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from helpers import ACCESS_KEY, SECRET_KEY, _client, assert_clean_error, ok, output

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str) -> bytes:
    with DIRECT.open(url, timeout=30) as answer:
        return answer.read()


def links(folder) -> dict[str, str]:
    """{path: link} from a share's index.html."""
    page = (folder / "index.html").read_text()
    return {html.unescape(path): html.unescape(url) for path, url in
            re.findall(r'<tr><td>([^<]*)</td><td>[^<]*</td><td><code>[0-9a-f]{64}</code></td><td><a href="([^"]*)"', page)}


def the_share(project):
    found = sorted((project.root / ".datakit-data" / "shares").iterdir())
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def versioned_auth(auth_s3):
    client = _client(auth_s3.endpoint_url)
    name = "share-versioned"
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def test_links_give_the_exact_bytes_and_a_later_push_does_not_change_them(project, auth_s3, versioned_auth):
    project.configure(s3_bucket=versioned_auth, s3_endpoint_url=auth_s3.endpoint_url)
    project.write("clean/results.csv", "precinct,votes\n1,20\n")
    project.write("clean/notes.txt", "final\n")
    project.write("raw/big.bin", bytes(range(256)) * 400)
    ok(project.run("data", "push"))

    shared = ok(project.run("data", "share", "data/clean/"))

    assert "Shared 2 file(s)" in shared.stdout and "X-Amz-Signature" not in output(shared)
    folder = the_share(project)
    found = links(folder)
    assert sorted(found) == ["clean/notes.txt", "clean/results.csv"]
    sums = dict(line.split("  ", 1)[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    for path, url in found.items():
        data = fetch(url)
        assert data == project.files()[path] and hashlib.sha256(data).hexdigest() == sums[path]
    url = found["clean/results.csv"]
    forged = re.sub(r"(X-Amz-Signature=)([0-9a-f])", lambda m: m[1] + ("0" if m[2] != "0" else "1"), url)
    with pytest.raises(urllib.error.HTTPError):
        fetch(forged)  # the signature is what opens it

    project.write("clean/results.csv", "precinct,votes\n1,21\n")  # a correction pushed later
    ok(project.run("data", "push"))
    assert fetch(found["clean/results.csv"]) == b"precinct,votes\n1,20\n"  # the version shared

    if shutil.which("curl") or shutil.which("wget"):
        copy = project.root.parent / "recipient"
        shutil.copytree(folder, copy)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(copy)}
        done = subprocess.run(["sh", str(copy / "download.sh")], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, output(done)
        assert (copy / "clean" / "results.csv").read_bytes() == b"precinct,votes\n1,20\n"
        assert "clean/notes.txt: OK" in done.stdout


def test_links_end_with_the_signing_credentials_and_the_user_is_told(project, home, auth_s3, versioned_auth):
    ends = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)).replace(microsecond=0)
    answer = json.dumps({"Version": 1, "AccessKeyId": ACCESS_KEY, "SecretAccessKey": SECRET_KEY,
                         "Expiration": ends.strftime("%Y-%m-%dT%H:%M:%SZ")})
    helper = home.root / "credentials-helper.py"
    helper.parent.mkdir(parents=True, exist_ok=True)
    helper.write_text(f"print({answer!r})\n")
    home.aws_config.parent.mkdir(parents=True, exist_ok=True)
    home.aws_config.write_text(f"[profile temp]\ncredential_process = {sys.executable} {helper}\nregion = us-east-1\n")
    project.configure(s3_bucket=versioned_auth, s3_endpoint_url=auth_s3.endpoint_url, aws_user_profile="temp")
    project.write("a.csv", "a\n")
    ok(project.run("data", "push"))

    shared = ok(project.run("data", "share", "data/a.csv", "--days", "7"))

    assert 'The links last less than asked: your temporary credentials (profile "temp") ends at' in shared.stdout
    url = links(the_share(project))["a.csv"]
    lasts = int(re.search(r"X-Amz-Expires=(\d+)", url).group(1))
    assert 7000 < lasts <= 7200
    assert fetch(url) == b"a\n"


def test_a_file_that_differs_from_its_pushed_version_is_refused_by_name(project, bucket):
    project.configure()
    project.write("a.csv", "a\n")
    project.write("b.csv", "b\n")
    ok(project.run("data", "push"))
    project.write("a.csv", "a, edited\n")
    project.write("c.csv", "never pushed\n")

    text = assert_clean_error(project.run("data", "share", "data/"))

    assert "data/a.csv (changed here since it was pushed or pulled; push it first)" in text
    assert "data/c.csv (not pushed yet; push it first)" in text
    assert not (project.root / ".datakit-data" / "shares").exists()
    for days in ("8", "0", "soon"):
        assert "--days" in assert_clean_error(project.run("data", "share", "data/b.csv", "--days", days))


def test_names_a_download_script_would_misread_are_refused_and_quotes_are_doubled():
    from datakit_data import share

    assert share.unshareable("C:/Users/Public/evil.bat") and share.unshareable("raw/~/x.csv")
    assert share.unshareable("-") and share.unshareable("a|b.csv") and share.unshareable("ok/x.csv") is None
    assert share._ps("a\u2019;calc;\u2019.csv") == "'a\u2019\u2019;calc;\u2019\u2019.csv'"
    assert share._ps("it's") == "'it''s'"


def test_a_lock_whose_version_id_holds_other_bytes_is_refused_by_share(project, auth_s3, versioned_auth):
    project.configure(s3_bucket=versioned_auth, s3_endpoint_url=auth_s3.endpoint_url)
    project.write("x.csv", "OLD secret draft\n")
    ok(project.run("data", "push"))
    lock = project.root / "config" / "datakit-data.lock"
    old_line = next(line for line in lock.read_text().splitlines() if line.startswith("x.csv\t"))
    project.write("x.csv", "NEW public data\n")
    ok(project.run("data", "push"))
    new_line = next(line for line in lock.read_text().splitlines() if line.startswith("x.csv\t"))
    doctored = new_line.split("\t")
    doctored[3] = old_line.split("\t")[3]  # the old draft's version id, under the new ETag
    lock.write_text(lock.read_text().replace(new_line, "\t".join(doctored)))

    text = assert_clean_error(project.run("data", "share", "data/x.csv"))
    assert "data/x.csv (the version the lock names for it holds other bytes" in text
    assert not (project.root / ".datakit-data" / "shares").exists()
