"""An analyst's first week: what a newcomer types and reads (issue 31).

Each test runs the real `datakit` against the session's S3 server and asserts what the
user sees: the message, the exit code, the files on disk and the objects in the bucket.
"""
import os
import subprocess

import pytest

from helpers import DATAKIT, assert_clean_error, ok, output


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


def test_a_reader_that_goes_away_ends_the_output_quietly(project, bucket):
    project.configure()
    for i in range(30):
        project.write(f"f{i:02d}.csv", str(i))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line, as `| head -0` would be
    try:
        done = subprocess.run([DATAKIT, "data", "status"], cwd=project.root, env=project.home.env,
                              stdin=subprocess.DEVNULL, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def test_a_push_whose_reader_goes_away_still_pushes_everything(project, bucket):
    project.configure()
    for i in range(5):
        project.write(f"f{i}.csv", str(i))
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([DATAKIT, "data", "push"], cwd=project.root, env=project.home.env,
                              stdin=subprocess.DEVNULL, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr
    assert bucket.objects(project.name) == project.files()
