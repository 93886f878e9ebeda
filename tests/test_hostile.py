"""A hostile bucket, hostile names and links: nothing outside data/ is ever touched.

The keys are planted in moto's S3 server, which keeps them exactly as AWS S3 does
(SeaweedFS would normalise ``..`` and ``//``). Every test checks that victim files
in the project folder, its parent and an unrelated folder are byte-identical.
"""
import json
import os
import re

import pytest

from helpers import assert_clean_error, output

VICTIM = b"precious, not the project's to touch\n"


@pytest.fixture
def victims(project, tmp_path):
    """Files a hostile key would aim at: in the project folder, its parent, elsewhere."""
    places = [project.root / "notes.txt", project.root.parent / "notes.txt", tmp_path / "elsewhere" / "victim.txt"]
    for place in places:
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(VICTIM)
    yield places
    for place in places:
        assert place.read_bytes() == VICTIM, f"{place} was changed"


@pytest.fixture
def hostile(project, moto, moto_bucket):
    """The project, synced with moto; plant(key, body) writes a raw key under s3_path."""
    project.configure(s3_endpoint_url=moto.endpoint_url)

    def plant(rest: str, body: bytes = b"planted\n") -> None:
        moto_bucket.put(f"{project.name}/{rest}", body)

    moto_bucket.put(f"{project.name}/safe.csv", b"safe\n")
    return plant


def raw_control(text: str) -> list[str]:
    """Control characters that would reach the terminal raw (newlines end lines)."""
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\r\t") or 0x7F <= ord(c) < 0xA0]


def recorded(project) -> set:
    return set(json.loads((project.root / ".datakit-data" / "record.json").read_text())["files"]["path"])


def test_absolute_keys_never_become_paths_outside_data(project, hostile, victims):
    elsewhere = victims[2]
    hostile(f"/{elsewhere}")  # remote path /tmp/.../victim.txt
    hostile(f"/{elsewhere.parent}/./victim.txt")

    for _ in range(2):  # the second pull once truncated the victims
        result = project.run("data", "pull")
        text = assert_clean_error(result, code=2)
        assert project.files() == {"safe.csv": b"safe\n"}
        assert recorded(project) == {"safe.csv"}
        assert text.count(f"/{elsewhere} (an absolute path)") == 1
        assert text.count("(an absolute path)") == 2


def test_parent_segments_never_move_the_projects_own_files(project, hostile, victims):
    hostile("../../../notes.txt")
    hostile("../notes.txt")
    hostile("sub/../../notes.txt")
    project.write("mine.csv", "mine\n")

    for _ in range(2):
        text = assert_clean_error(project.run("data", "pull"), code=2)
        assert text.count('(a ".." folder name)') == 3
    assert project.files() == {"safe.csv": b"safe\n", "mine.csv": b"mine\n"}
    assert recorded(project) == {"safe.csv"}


def test_keys_that_cannot_be_files_here_are_skipped_once_and_the_rest_recorded(project, hostile, victims):
    hostile("a", b"file a\n")
    hostile("a/b", b"file a/b\n")
    hostile(".")
    hostile("x" * 256 + ".csv")
    hostile("ok/fine.csv", b"fine\n")

    for _ in range(2):
        result = project.run("data", "pull")
        text = assert_clean_error(result, code=2)
        assert "3 file(s) skipped" in text
        assert text.count("a (a file with the same name as a folder on S3)") == 1
        assert text.count('. (a "." folder name)') == 1
        assert text.count("(a name longer than 255 bytes)") == 1
        assert "The rest went through" in text and "rename or remove them on S3" in text
    assert project.files() == {"safe.csv": b"safe\n", "a/b": b"file a/b\n", "ok/fine.csv": b"fine\n"}
    assert recorded(project) == {"safe.csv", "a/b", "ok/fine.csv"}


def test_control_characters_in_keys_never_reach_the_terminal_raw(project, bucket, victims):
    # SeaweedFS keeps control characters in keys (moto's router refuses a newline).
    project.configure()
    for key in ("safe.csv", "evil\x1b[2J\x1b]0;pwned\x07.csv", "forged\nconflicts: 0\nunchanged: 99.csv",
                "bell\x07\x9b.csv"):
        bucket.put(f"{project.name}/{key}", b"safe\n" if key == "safe.csv" else b"planted\n")

    for args in (("status",), ("pull", "dryrun"), ("pull",), ("push", "dryrun"), ("push",)):
        result = project.run("data", *args)
        text = output(result)
        assert not raw_control(text), (args, text)
        assert not [line for line in text.splitlines() if line.startswith("unchanged: 99")], (args, text)
        assert result.returncode == (2 if args[0] == "pull" else 0), (args, text)
    status = project.run("data", "status").stdout
    assert [line for line in status.splitlines() if line.startswith("conflicts:")] == ["conflicts: 0"]
    assert "skipped on S3: forged\\nconflicts: 0\\nunchanged: 99.csv (a control or invisible character in the name)" in status
    assert "skipped on S3: evil\\x1b[2J\\x1b]0;pwned\\x07.csv" in status
    assert project.files() == {"safe.csv": b"safe\n"}


def test_a_folder_link_in_data_never_carries_a_pull_outside(project, hostile, victims, tmp_path):
    elsewhere = victims[2].parent
    project.data.mkdir(parents=True)
    os.symlink(elsewhere, project.data / "out")
    hostile("out/victim.txt", b"overwritten through a link\n")
    hostile("out/new.txt", b"a new file through a link\n")

    text = assert_clean_error(project.run("data", "pull"), code=2)
    assert "conflict: data/out/victim.txt (differs, and there is no sync record yet)" in text
    assert "data/out/new.txt (its folder in data/ is a link that leads outside data/)" in text

    text = assert_clean_error(project.run("data", "pull", "force"), code=2)
    assert "data/out/victim.txt (its folder in data/ is a link that leads outside data/)" in text
    assert "data/out/new.txt (its folder in data/ is a link that leads outside data/)" in text
    assert not (elsewhere / "new.txt").exists()
    assert (project.data / "safe.csv").read_bytes() == b"safe\n"


def test_folder_links_are_followed_once_and_never_in_a_loop(project, bucket, tmp_path):
    project.configure()
    project.write("real/one.csv", "one\n")
    os.symlink("/", project.data / "root")
    os.symlink(".", project.data / "self")
    os.symlink("..", project.data / "real" / "up")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "lookup.csv").write_text("lookup\n")
    os.symlink(shared, project.data / "lookups")
    os.symlink(shared, project.data / "lookups-again")

    for args in (("status",), ("push", "dryrun")):
        result = project.run("data", *args, timeout=60)
        assert "data/root/ (a link to a folder that holds data/ itself (a loop))" in output(result), args
    result = project.run("data", "push", timeout=60)

    text = assert_clean_error(result, code=2)
    assert "data/self/ (a link to a folder that holds it (a loop))" in text
    assert "data/real/up/ (a link to a folder that holds it (a loop))" in text
    assert "data/lookups-again/ (a link to a folder that another link already includes)" in text
    assert bucket.objects(project.name) == {"real/one.csv": b"one\n", "lookups/lookup.csv": b"lookup\n"}


def test_a_name_that_is_not_utf8_is_skipped_and_the_rest_reported_and_pushed(project, bucket):
    project.configure()
    project.write("good.csv", "good\n")
    with open(os.path.join(os.fsencode(project.data), b"caf\xe9.csv"), "wb") as fh:
        fh.write(b"latin-1 name\n")
    os.symlink(project.root / "nowhere", project.data / "dangling.csv")

    text = assert_clean_error(project.run("data", "push"), code=2)

    assert "data/caf\\xe9.csv (a name that is not valid UTF-8)" in text
    assert "data/dangling.csv (a link whose target does not exist)" in text
    assert "surrogates" not in text
    assert bucket.objects(project.name) == {"good.csv": b"good\n"}


@pytest.mark.parametrize("password", ["p@ss@w0rd-s3cret", "sp%40ce-s3cret"])
def test_debug_output_never_shows_a_password_in_the_endpoint(project, password, outside):
    from s3server import free_ports

    port = free_ports(1)[0]  # nothing listens: every attempt fails, --debug shows the traceback
    project.configure(s3_endpoint_url=f"http://analyst:{password}@127.0.0.1:{port}")
    project.write("a.csv", "a")

    proxied = len(outside.attempts)
    for args in (("--debug", "data", "push"), ("--debug", "data", "status"), ("data", "push", "debug")):
        result = project.run(*args)
        text = output(result)
        assert result.returncode == 1, text
        assert "s3cret" not in text, (args, text)
        assert f"http://***@127.0.0.1:{port}" in text, (args, text)
    assert "Traceback" in output(project.run("--debug", "data", "push"))
    assert outside.attempts[proxied:] == []  # never sent, so never to a proxy either


def test_printable_escapes_every_control_character_and_nothing_else():
    from datakit_data.names import printable

    assert printable("plain é ü 漢字 [x] (1).csv") == "plain é ü 漢字 [x] (1).csv"
    assert printable("a\x1bb\nc\rd\x00e\x7ff\x9bg\u2028h") == "a\\x1bb\\nc\\rd\\x00e\\x7ff\\x9bg\\u2028h"
    assert printable(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", printable("".join(map(chr, range(0xA0)))))


@pytest.mark.parametrize("key, why", [
    ("", "an empty name"),
    ("/etc/passwd", "an absolute path"),
    ("a//b", "an empty folder name (//)"),
    ("a/./b", 'a "." folder name'),
    ("../x", 'a ".." folder name'),
    ("a\\b", "a backslash, which is a folder separator on Windows"),
    ("a\x00b", "a control or invisible character in the name"),
    ("a\x1b[1mb", "a control or invisible character in the name"),
    ("x" * 256, "a name longer than 255 bytes"),
    ("é" * 128, "a name longer than 255 bytes"),  # 256 bytes in UTF-8
    ("ok/" + "x" * 255, None),
    ("dir/file.csv", None),
])
def test_key_problem(key, why):
    from datakit_data.names import key_problem

    assert key_problem(key) == why


def test_refused_keys_names_file_folder_and_case_clashes():
    from datakit_data.names import refused_keys

    keys = ["a", "a/b", "Report.csv", "report.csv", "x/../y", "fine.csv"]
    assert refused_keys(keys) == {
        "a": "a file with the same name as a folder on S3",
        "x/../y": 'a ".." folder name',
    }
    folded = refused_keys(keys, case_insensitive=True)
    assert folded["report.csv"] == "differs only by case or accents from Report.csv, on a file system that ignores case"
    assert "Report.csv" not in folded and "fine.csv" not in folded


def test_inside_refuses_paths_that_resolve_elsewhere(tmp_path):
    from datakit_data.names import UnsafePath, inside

    base = tmp_path / "data"
    (base / "sub").mkdir(parents=True)
    os.symlink(tmp_path, base / "escape")
    assert inside(str(base), "sub/x.csv") == str(base / "sub" / "x.csv")
    for bad in ("../x", "/etc/passwd", "escape/x", "sub/../../x", ".", "sub/.."):  # noqa: B007
        with pytest.raises(UnsafePath):
            inside(str(base), bad)


def test_one_loop_s_inside_answers_as_inside_does_and_makes_each_folder(tmp_path):
    from datakit_data.names import Inside, UnsafePath

    base = tmp_path / "data"
    base.mkdir()
    os.symlink(tmp_path, base / "escape")
    into = Inside(str(base))
    for good in ("new/deeper/x.csv", "new/deeper/y.csv", "top.csv"):
        assert into.prepared(good) == str(base / good)
    assert (base / "new" / "deeper").is_dir() and not (base / "new" / "deeper" / "x.csv").exists()
    for bad in ("../x", "/etc/passwd", "escape/x", "escape/y", "new/../../x", ".", "new/.."):
        with pytest.raises(UnsafePath):
            into.prepared(bad)
    assert sorted(os.listdir(tmp_path)) == ["data"]  # nothing made outside data/


def test_more_keys_that_cannot_be_files_are_skipped_and_the_rest_recorded(project, hostile, victims):
    hostile("plain/", b"a folder marker with content\n")
    hostile("rl\u202etxt.exe", b"bidi\n")
    hostile("/".join(["s" * 250] * 17), b"too deep\n")
    hostile("fine.csv", b"fine\n")

    text = assert_clean_error(project.run("data", "pull"), code=2)

    assert "3 file(s) skipped" in text
    assert "plain/ (a name ending in /, which only folders have)" in text
    assert "rl\\u202etxt.exe (a control or invisible character in the name)" in text
    assert "(a path too long for this file system)" in text
    assert "\u202e" not in text
    assert project.files() == {"safe.csv": b"safe\n", "fine.csv": b"fine\n"}
    assert recorded(project) == {"safe.csv", "fine.csv"}


def test_layers_of_folder_links_are_walked_once_each(project, bucket):
    project.configure()
    project.write("d0/leaf.csv", "leaf\n")
    for n in range(1, 17):  # 2**16 paths if every link were followed
        (project.data / f"d{n}").mkdir()
        for name in ("a", "b"):
            os.symlink(f"../d{n - 1}", project.data / f"d{n}" / name)

    result = project.run("data", "status", timeout=60)

    assert result.returncode == 0, output(result)
    assert result.stdout.count("  new: data/") < 100


@pytest.mark.parametrize("endpoint, expected", [
    (" http://alice:Sup3rS3cret@127.0.0.1:9 ", "could not connect to http://***@127.0.0.1:9"),
    ("alice:Sup3rS3cret@127.0.0.1:9", '"s3_endpoint_url" must be a URL starting with http:// or https://'),
])
def test_a_sloppy_endpoint_never_shows_nor_sends_its_password(project, endpoint, expected, outside):
    project.configure(s3_endpoint_url=endpoint)
    project.write("a.csv", "a")
    proxied = len(outside.attempts)

    for args in (("data", "push"), ("--debug", "data", "status")):
        result = project.run(*args)
        assert result.returncode == 1 and expected in output(result), output(result)
        assert "Sup3rS3cret" not in output(result)
    assert outside.attempts[proxied:] == []


def test_config_list_masks_credentials_in_the_endpoint(project, home):
    home.write_global_config({"s3_endpoint_url": "https://alice:Sup3rS3cret@s3.example.org"})

    result = project.run("config", "list")

    assert result.returncode == 0, output(result)
    assert "Sup3rS3cret" not in result.stdout
    assert "s3_endpoint_url          [set] https://***@s3.example.org" in result.stdout
