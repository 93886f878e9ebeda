"""`no-sign-request`: a public bucket used with no credentials at all.

Every request of the run goes unsigned, the side questions too (does the bucket
keep versions, who pushed a version, what an ETag means): Settings carries it, and
s3.client reads it there.
"""
from helpers import BUCKET, VERSIONED, Bucket, _client, assert_clean_error, ok

#: No keys in the environment, and no AWS files with any.
NOBODY = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
          "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config"}


def test_a_public_read_bucket_is_pulled_and_looked_at_without_credentials(project, colleague, auth_s3):
    """The server answers only signed writes, but lets anyone list and read."""
    for checkout in (project, colleague):
        checkout.configure(s3_endpoint_url=auth_s3.endpoint_url, s3_path=project.name)
    project.write("open.csv", "open data\n")
    ok(project.run("data", "push"))  # signed, by the owner

    # Without credentials, a signed request is refused: the run knows no keys.
    text = assert_clean_error(colleague.run("data", "pull", env=NOBODY))
    assert "no AWS credentials found" in text

    pulled = ok(colleague.run("data", "pull", "no-sign-request", env=NOBODY))
    assert colleague.files() == {"open.csv": b"open data\n"}
    assert "credentials" not in pulled.stderr

    # A file replaced by the pull asks whether the bucket keeps versions: unsigned too.
    project.write("open.csv", "open data, revised\n")
    ok(project.run("data", "push"))
    replaced = ok(colleague.run("data", "pull", "no-sign-request", env=NOBODY))
    assert "Pull: 1 file(s) received" in replaced.stdout and "credentials" not in replaced.stderr
    assert colleague.files() == {"open.csv": b"open data, revised\n"}

    status = ok(colleague.run("data", "status", "no-sign-request", env=NOBODY))
    assert "push would send: 0 new, 0 changed" in status.stdout and "unchanged: 1" in status.stdout

    # Writing stays the owner's: an unsigned push is refused by name, and nothing lands.
    colleague.write("open.csv", "not yours to change\n")
    refused = assert_clean_error(colleague.run("data", "push", "no-sign-request", env=NOBODY))
    assert f'access denied to bucket "{BUCKET}"' in refused
    assert Bucket(_client(auth_s3.endpoint_url), BUCKET).objects(project.name) == {"open.csv": b"open data, revised\n"}


def test_push_pull_status_and_history_all_run_unsigned_where_the_bucket_allows_it(project, colleague, versioned):
    """The session's server lets anyone write: every command works with no credentials."""
    for checkout in (project, colleague):
        checkout.configure(s3_bucket=VERSIONED, s3_path=project.name)
    project.write("a.csv", "first\n")
    ok(project.run("data", "push", "no-sign-request", env=NOBODY))
    project.write("a.csv", "second\n")
    pushed = ok(project.run("data", "push", "no-sign-request", env=NOBODY))
    assert "Push: 1 file(s) sent" in pushed.stdout and "credentials" not in pushed.stderr
    assert versioned.objects(project.name) == {"a.csv": b"second\n"}

    ok(colleague.run("data", "pull", "no-sign-request", env=NOBODY))
    assert colleague.files() == {"a.csv": b"second\n"}

    status = ok(colleague.run("data", "status", "no-sign-request", "data/a.csv", env=NOBODY))
    assert "versions: kept by the bucket" in status.stdout

    history = ok(colleague.run("data", "history", "no-sign-request", "data/a.csv", env=NOBODY))
    rows = [line for line in history.stdout.splitlines() if line.rstrip().endswith(("data/a.csv", "(current)"))]
    assert len(rows) == 2 and rows[0].endswith("(current)"), history.stdout
    # The same commands, signed, find no credentials: the unsigned runs were unsigned.
    assert "no AWS credentials found" in assert_clean_error(colleague.run("data", "history", env=NOBODY))
    assert "no AWS credentials found" in assert_clean_error(colleague.run("data", "status", env=NOBODY))
