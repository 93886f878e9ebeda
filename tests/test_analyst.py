"""An analyst's first week: what a newcomer types and reads (issue 31).

Each test runs the real `datakit` against the session's S3 server and asserts what the
user sees: the message, the exit code, the files on disk and the objects in the bucket.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import DATAKIT, VERSIONED, assert_clean_error, ok, output


@pytest.mark.parametrize("typed, meant", [
    (["--dryrun"], "dryrun"),
    (["-n"], "dryrun"),
    (["--delete", "--dryrun"], "delete dryrun"),
])
def test_a_dashed_flag_word_gets_one_line_with_the_word_to_type(project, bucket, typed, meant):
    project.configure()
    project.write("a.csv", "a")

    result = project.run("data", "push", *typed)

    text = assert_clean_error(result, 1)
    assert text.strip().count("\n") == 0, text
    assert "without dashes" in text and f"`datakit data push {meant}`" in text
    assert bucket.keys(project.name) == []


def test_an_unknown_option_names_the_help(project):
    project.configure()
    text = assert_clean_error(project.run("data", "status", "--color"), 1)
    assert "--color" in text and "`datakit data status --help`" in text and "usage:" not in text


def run_to_a_closed_pipe(project, *args) -> subprocess.CompletedProcess:
    """`datakit *args` writing its output to a pipe whose reader is gone before the first
    line, as `| head -0` would be."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([DATAKIT, *args], cwd=project.root, env=project.home.env, stdin=subprocess.DEVNULL,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)


def test_a_reader_that_goes_away_ends_the_output_quietly(project, bucket):
    project.configure()
    for i in range(30):
        project.write(f"f{i:02d}.csv", str(i))
    done = run_to_a_closed_pipe(project, "data", "status")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def test_a_push_whose_reader_goes_away_still_pushes_everything(project, bucket):
    project.configure()
    for i in range(5):
        project.write(f"f{i}.csv", str(i))
    done = run_to_a_closed_pipe(project, "data", "push")
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr
    assert bucket.objects(project.name) == project.files()


def run_in(project, folder, *args):
    """`datakit` run from a folder of the project (as a user who cd'd there)."""
    return subprocess.run([DATAKIT, *args], cwd=project.root / folder, env=project.home.env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_commands_work_from_a_subfolder_and_say_which_project(project, colleague, bucket):
    project.configure()
    project.write("raw/a.csv", "a")
    project.write("raw/b.csv", "b")
    project.write("clean/c.csv", "c")

    status = ok(run_in(project, "data/raw", "data", "status", "a.csv"))
    assert f"Project: {project.root} (run from data/raw/)" in status.stderr
    assert "data/raw/a.csv" in status.stdout and "b.csv" not in status.stdout

    ok(run_in(project, "data/raw", "data", "push", "a.csv"))  # a path from here, as git reads it
    assert bucket.objects(project.name) == {"raw/a.csv": b"a"}
    ok(run_in(project, "data/raw", "data", "push", "data/clean/c.csv"))  # as status prints it
    assert sorted(bucket.objects(project.name)) == ["clean/c.csv", "raw/a.csv"]
    ok(run_in(project, "data/raw", "data", "push"))  # the whole project, never data/raw/data/
    assert bucket.objects(project.name) == project.files()
    assert not (project.data / "raw" / "data").exists() and not (project.data / "raw" / "config").exists()

    colleague.configure(s3_path=project.name)
    (colleague.data / "raw").mkdir(parents=True)
    ok(run_in(colleague, "data/raw", "data", "pull", "b.csv"))
    assert colleague.files() == {"raw/b.csv": b"b"}


def test_init_inside_a_project_is_refused_and_creates_nothing(project):
    project.configure()
    (project.data / "raw").mkdir(parents=True)

    text = assert_clean_error(run_in(project, "data/raw", "data", "init"))

    assert f"inside the project in {project.root}" in text
    assert sorted(p.name for p in (project.data / "raw").iterdir()) == []


def test_outside_any_project_says_so(tmp_path, home):
    folder = tmp_path / "nowhere"
    folder.mkdir()
    done = subprocess.run([DATAKIT, "data", "status"], cwd=folder, env=home.env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    text = assert_clean_error(done)
    assert "nor in any folder above it" in text and "`datakit data init`" in text


def test_several_paths_and_globs_in_one_command(project, colleague, bucket):
    project.configure()
    for name in ("raw/a.csv", "raw/b.csv", "raw/notes.txt", "clean/x.csv", "clean/y.csv", "other.csv"):
        project.write(name, name)

    # What the shell makes of `datakit data push data/raw/*.csv data/clean/`.
    ok(project.run("data", "push", "data/raw/a.csv", "data/raw/b.csv", "data/clean/"))

    assert sorted(bucket.objects(project.name)) == ["clean/x.csv", "clean/y.csv", "raw/a.csv", "raw/b.csv"]
    status = ok(project.run("data", "status", "--json", "data/raw/notes.txt", "data/other.csv"))
    assert '"data/other.csv"' in status.stdout and '"data/raw/notes.txt"' in status.stdout

    colleague.configure(s3_path=project.name)
    ok(colleague.run("data", "pull", "data/raw/b.csv", "data/clean/y.csv"))
    assert colleague.files() == {"raw/b.csv": b"raw/b.csv", "clean/y.csv": b"clean/y.csv"}
    # delete with several paths acts on those paths only.
    (project.data / "raw" / "a.csv").unlink()
    (project.data / "clean" / "x.csv").unlink()
    ok(project.run("data", "push", "delete", "data/raw/a.csv", "data/raw/b.csv"))
    assert sorted(bucket.objects(project.name)) == ["clean/x.csv", "clean/y.csv", "raw/b.csv"]


SSO_PROFILES = """
[profile legacy-sso]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = Analyst
region = us-east-1

[sso-session newsroom]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1

[profile session-sso]
sso_session = newsroom
sso_account_id = 123456789012
sso_role_name = Analyst
region = us-east-1

[profile failing-process]
credential_process = {python} -c "import sys; sys.exit(3)"
region = us-east-1

[profile half]
aws_access_key_id = AKIDONLYHALF
region = us-east-1
"""


@pytest.mark.parametrize("profile, says", [
    ("legacy-sso", "the AWS SSO login of profile \"legacy-sso\" is missing or has expired. "
                   "Run `aws sso login --profile legacy-sso`"),
    ("session-sso", "Run `aws sso login --profile session-sso`"),
    ("failing-process", 'the credential_process of profile "failing-process" failed'),
    ("half", 'profile "half" has only part of its credentials (missing aws_secret_access_key)'),
])
def test_each_credential_failure_is_one_line_that_says_what_to_do(project, home, bucket, profile, says):
    home.aws_config.parent.mkdir(parents=True, exist_ok=True)
    home.aws_config.write_text(SSO_PROFILES.format(python=sys.executable))
    project.configure(aws_user_profile=profile)
    project.write("a.csv", "a")

    for command in ("status", "push", "pull", "history"):
        text = assert_clean_error(project.run("data", command))
        assert text.count("\n") == 1, text
        assert says in text, text
    assert bucket.objects(project.name) == {}


def test_datakit_data_alone_lists_the_commands_and_each_help_speaks_to_the_user(tmp_path, home):
    def run(*args):
        return subprocess.run([DATAKIT, *args], cwd=tmp_path, env=home.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)

    alone = ok(run("data"))
    for name in ("init", "push", "pull", "status", "history"):
        assert f"datakit data {name} " in alone.stdout
    assert "Send your changes in data/ to S3" in alone.stdout
    assert "Send your changes in data/ to S3" in ok(run("data", "--help")).stdout

    push = ok(run("data", "push", "--help")).stdout
    assert "aws s3 sync data/" not in push  # what it does for the user, not how
    for says in ("conflict", "force", "delete", "datakit data push data/clean/ data/raw/*.csv", "examples:"):
        assert says in push, says
    pull = ok(run("data", "pull", "--help")).stdout
    assert "examples:" in pull and "--as-of" in pull and "conflict" in pull

    text = assert_clean_error(run("data", "pussh"))
    assert '"pussh" is not a datakit data command' in text and text.count("\n") == 1


def test_space_problem_counts_the_downloads_and_room_to_spare():
    from datakit_data.pull import SPARE_BYTES, space_problem

    assert space_problem(10 * 2**20, 10 * 2**20 + SPARE_BYTES) is None
    said = space_problem(3 * 2**30, 2**30)
    assert said == ("Not enough disk space for this pull: it downloads 3.0 GiB and the disk of data/ "
                    "has 1.0 GiB free.")


def test_a_pull_that_would_not_fit_on_the_disk_says_so_before_starting(project, colleague, bucket, tmp_path):
    """The colleague's project on a small disk of its own (a tmpfs in a user namespace)."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare here to give a folder a small disk of its own")
    project.configure()
    project.write("big.bin", os.urandom(2 * 2**20))
    ok(project.run("data", "push"))
    colleague.configure(s3_path=project.name)
    config = colleague.config_path.read_bytes()
    shutil.rmtree(colleague.root)
    colleague.root.mkdir()
    (tmp_path / "config.json").write_bytes(config)
    script = ('mount -t tmpfs -o size=16m tmpfs "$1" || exit 99; mkdir -p "$1/config" "$1/data" && '
              'cp "$2" "$1/config/datakit-data.json" && cd "$1" && "$3" data pull; echo "exit=$?"; ls -A "$1/data"')
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                           str(colleague.root), str(tmp_path / "config.json"), DATAKIT],
                          env=colleague.home.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    if done.returncode == 99 or "exit=" not in done.stdout:
        pytest.skip(f"no user namespaces here to mount a small disk: {done.stderr.strip()[:200]}")
    assert "exit=1" in done.stdout, output(done)
    assert "Not enough disk space for this pull: it downloads 2.0 MiB" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout.strip().endswith("exit=1")  # nothing in data/


def test_words_a_colleagues_new_file_a_dryrun_and_the_unversioned_notice_once(project, colleague, bucket):
    project.configure()
    project.write("a.csv", "a1")
    ok(project.run("data", "push"))
    colleague.configure(s3_path=project.name)
    colleague.write("theirs.csv", "t")
    ok(colleague.run("data", "push"))

    pushed = ok(project.run("data", "push"))
    assert "kept: data/theirs.csv (on S3 only, new there: pull to get it)" in pushed.stderr

    (project.data / "a.csv").unlink()
    dry = ok(project.run("data", "push", "delete", "dryrun"))
    assert "1 would be deleted" in dry.stdout and "1 deleted" not in dry.stdout

    # The test bucket keeps no versions: said after the first run that overwrites, then not again.
    project.write("a.csv", "a2")
    first = ok(project.run("data", "push"))
    assert "keeps no versions" in first.stderr and "said once for this project" in first.stderr
    project.write("a.csv", "a3")
    second = ok(project.run("data", "push"))
    assert "keeps no versions" not in second.stderr
    assert "versions: not kept" in ok(project.run("data", "status")).stdout


def test_a_download_line_comes_only_for_a_file_that_landed_in_data(project, colleague, bucket):
    project.configure()
    project.write("blocked/x.csv", "x")
    project.write("open.csv", "o")
    ok(project.run("data", "push"))
    colleague.configure(s3_path=project.name)
    # A file where the folder should be: the download arrives, and cannot be moved into data/
    # (as in a read-only folder, which root could still write to).
    colleague.write("blocked", "a file of mine, not a folder")

    pulled = colleague.run("data", "pull")

    assert_clean_error(pulled, 2)
    assert "download: " in pulled.stdout and "open.csv to data/open.csv" in pulled.stdout
    assert "blocked/x.csv" not in pulled.stdout
    assert "data/blocked/x.csv" in pulled.stderr
    assert colleague.files() == {"blocked": b"a file of mine, not a folder", "open.csv": b"o"}


def test_push_after_a_rollback_names_it_and_says_how_to_make_it_the_latest(project, versioned):
    project.configure(s3_bucket=VERSIONED)
    project.write("story.csv", "v1\n")
    ok(project.run("data", "push"))
    project.write("story.csv", "v2, longer\n")
    ok(project.run("data", "push"))
    first = json.loads(ok(project.run("data", "history", "--json", "data/story.csv")).stdout)["versions"][-1]
    ok(project.run("data", "pull", "--as-of", first["version_id"], "data/story.csv"))
    assert project.files() == {"story.csv": b"v1\n"}

    pushed = ok(project.run("data", "push"))

    assert "kept: data/story.csv (brought back to an older version (pull --as-of or --commit); S3 holds a newer " \
           "one. `datakit data push force data/story.csv` makes yours the latest)" in pushed.stderr
    assert "changed on S3" not in pushed.stderr
    ok(project.run("data", "push", "force", "data/story.csv"))
    assert versioned.objects(project.name) == {"story.csv": b"v1\n"}
    # A later ordinary pull forgets the rollback.
    ok(project.run("data", "pull"))
    assert "older version" not in ok(project.run("data", "status")).stdout


def _conflict(project, colleague):
    """a.csv pushed by the project, then changed by the colleague (ana, pushed) and here."""
    project.configure()
    project.write("a.csv", "1\n2\n3\n")
    project.write("b.csv", "b\n")
    ok(project.run("data", "push"))
    colleague.configure(s3_path=project.name)
    ok(colleague.run("data", "pull"))
    colleague.write("a.csv", "1\n2 theirs\n3\n")
    ok(colleague.run("data", "push", env={"USER": "ana", "LOGNAME": "ana"}))
    project.write("a.csv", "1\n2 mine\n3\n")


def test_a_conflict_names_who_pushed_and_compare_puts_theirs_beside_yours(project, colleague, bucket):
    _conflict(project, colleague)

    pushed = project.run("data", "push")

    text = assert_clean_error(pushed)
    assert "conflict: data/a.csv (changed on both sides); S3's version pushed by ana, " in pushed.stderr
    # One instruction, the same wherever the conflict was found.
    assert "`datakit data compare`" in text and "Pull, then push again" not in text
    status = ok(project.run("data", "status")).stdout
    assert "S3's version pushed by ana" in status and "datakit data compare" in status

    compared = ok(project.run("data", "compare"))

    saved = project.root / ".datakit-data" / "theirs" / "data" / "a.csv"
    assert saved.read_bytes() == b"1\n2 theirs\n3\n"
    assert "S3's version of data/a.csv (pushed by ana, " in compared.stdout
    assert "-2 mine" in compared.stdout and "+2 theirs" in compared.stdout
    assert project.files()["a.csv"] == b"1\n2 mine\n3\n"
    assert bucket.objects(project.name)["a.csv"] == b"1\n2 theirs\n3\n"

    # S3 moves on after the compare: push force refuses what nobody has looked at.
    colleague.write("a.csv", "1\n2 theirs, again\n3\n")
    ok(colleague.run("data", "push"))
    refused = project.run("data", "push", "force", "data/a.csv")
    assert "S3 changed it again after `datakit data compare` saved its version" in assert_clean_error(refused)
    assert bucket.objects(project.name)["a.csv"] == b"1\n2 theirs, again\n3\n"

    ok(project.run("data", "compare", "data/a.csv"))
    project.write("a.csv", "1\n2 mine and theirs, again\n3\n")  # merged by hand
    ok(project.run("data", "push", "force", "data/a.csv"))
    assert bucket.objects(project.name)["a.csv"] == b"1\n2 mine and theirs, again\n3\n"
    assert not saved.exists()


def test_pull_force_keeps_the_local_edit_it_replaces(project, colleague, bucket):
    _conflict(project, colleague)

    pulled = ok(project.run("data", "pull", "force"))

    assert project.files() == {"a.csv": b"1\n2 theirs\n3\n", "b.csv": b"b\n"}
    kept = list((project.root / ".datakit-data" / "replaced").glob("*/data/a.csv"))
    assert [p.read_bytes() for p in kept] == [b"1\n2 mine\n3\n"]
    assert "Kept your version of 1 file(s) this pull replaced or deleted (data/a.csv) in .datakit-data/replaced/" \
        in pulled.stderr
    assert "your edits a `pull force` replaced: 1 file(s)" in ok(project.run("data", "status")).stdout
    # A file as last synced is in S3's history: nothing to keep aside.
    colleague.write("b.csv", "b2\n")
    ok(colleague.run("data", "push"))
    ok(project.run("data", "pull", "force"))
    assert len(list((project.root / ".datakit-data" / "replaced").glob("*/data/*"))) == 1


def test_pull_force_delete_keeps_the_local_edit_it_deletes(project, colleague, bucket):
    _conflict(project, colleague)  # both sides know a.csv; the colleague changed it and pushed
    ok(colleague.run("data", "pull"))
    (colleague.data / "a.csv").unlink()
    ok(colleague.run("data", "push", "delete"))  # deleted on S3; changed here

    ok(project.run("data", "pull", "force", "delete"))

    assert "a.csv" not in project.files()
    kept = list((project.root / ".datakit-data" / "replaced").glob("*/data/a.csv"))
    assert [p.read_bytes() for p in kept] == [b"1\n2 mine\n3\n"]


def test_push_force_after_compare_never_replaces_or_deletes_what_was_not_looked_at(project, colleague, bucket):
    _conflict(project, colleague)
    ok(project.run("data", "compare"))
    colleague.write("a.csv", "1\n2 theirs, newer\n3\n")
    ok(colleague.run("data", "push"))
    (project.data / "a.csv").unlink()  # mine: deleted; a push force delete would delete theirs

    refused = project.run("data", "push", "force", "delete", "data/a.csv")

    assert "S3 changed it again after `datakit data compare`" in assert_clean_error(refused)
    assert bucket.objects(project.name)["a.csv"] == b"1\n2 theirs, newer\n3\n"

    project.write("a.csv", "1\n2 mine\n3\n")
    ok(project.run("data", "compare", "data/a.csv"))
    (colleague.data / "a.csv").unlink()
    ok(colleague.run("data", "push", "delete"))
    refused = project.run("data", "push", "force", "data/a.csv")
    assert "someone deleted it on S3 after `datakit data compare`" in assert_clean_error(refused)
    assert "a.csv" not in bucket.objects(project.name)


def test_compare_and_pull_force_never_write_through_a_link_in_the_state_folder(project, colleague, bucket, tmp_path):
    _conflict(project, colleague)
    outside = tmp_path / "outside"
    outside.mkdir()
    state = project.root / ".datakit-data"
    (state / "theirs").symlink_to(outside)
    (state / "replaced").symlink_to(outside)

    for command in (("compare",), ("pull", "force")):
        text = assert_clean_error(project.run("data", *command))
        assert "is a link or not a folder" in text
    assert list(outside.iterdir()) == []
    assert project.files()["a.csv"] == b"1\n2 mine\n3\n"


def test_a_data_folder_linked_to_another_disk_still_finds_its_project(project, bucket, tmp_path):
    elsewhere = tmp_path / "bigdisk" / "data"
    elsewhere.mkdir(parents=True)
    project.configure()
    project.data.symlink_to(elsewhere)
    project.write("raw/a.csv", "a")
    inside = project.data / "raw"  # as the shell names it: through the link

    done = subprocess.run([DATAKIT, "data", "push", "a.csv"], cwd=inside, env={**project.home.env, "PWD": str(inside)},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, output(done)
    assert bucket.objects(project.name) == {"raw/a.csv": b"a"}
    refused = subprocess.run([DATAKIT, "data", "init"], cwd=inside, env={**project.home.env, "PWD": str(inside)},
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "inside the project" in assert_clean_error(refused)
    assert not (elsewhere / "raw" / "config").exists()


def test_a_flag_word_that_is_also_a_folder_here_is_refused(project, bucket):
    project.configure()
    project.write("debug/log.csv", "l")
    project.write("other.csv", "o")
    text = assert_clean_error(run_in(project, "data", "data", "push", "dryrun", "debug"))
    assert '"debug" is both a flag word and a file or folder here: write ./debug' in text
    ok(run_in(project, "data", "data", "push", "./debug"))
    assert bucket.objects(project.name) == {"debug/log.csv": b"l"}


def test_compare_says_when_only_line_endings_differ_and_caps_long_lines(project, colleague, bucket):
    _conflict(project, colleague)
    colleague.write("a.csv", "1\r\n2 theirs\r\n3\r\n")
    ok(colleague.run("data", "push", "force"))
    project.write("a.csv", "1\n2 theirs\n3\n")
    assert "differ only in line endings" in ok(project.run("data", "compare")).stdout
    colleague.write("a.csv", "x," * 50_000 + "\n")
    ok(colleague.run("data", "push", "force"))
    shown = ok(project.run("data", "compare")).stdout
    assert "more characters)" in shown and len(shown) < 5_000


def test_an_absolute_path_inside_data_is_taken_and_an_unmatched_glob_gets_a_hint(project, bucket):
    project.configure()
    project.write("raw/a.csv", "a")
    project.write("raw/b.csv", "b")
    ok(run_in(project, "config", "data", "push", str(project.data / "raw" / "a.csv")))
    assert bucket.objects(project.name) == {"raw/a.csv": b"a"}
    outside = assert_clean_error(project.run("data", "push", str(project.root.parent)))
    assert "is not inside data/" in outside
    # What an unexpanded glob looks like on a fresh clone (no file here to match it).
    text = assert_clean_error(project.run("data", "pull", "data/clean/*.csv"))
    assert "A shell pattern (*, ?) matches only files in data/ here" in text
