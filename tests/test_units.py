"""Pure functions, tested directly: no server, no subprocess."""
import datetime
import re
import subprocess
import types
import sys
from pathlib import Path

import pytest

from datakit_data import aws_cli, failures, flags, project, settings
from datakit_data.exceptions import ConfigError, FlagError, Interrupted, SkippedFiles


def make(path="proj", profile=None, endpoint=None):
    return settings.Settings(bucket="bkt", path=path, profile=profile, endpoint_url=endpoint)


# flags -------------------------------------------------------------------

def test_flag_words_become_options_in_order_without_duplicates():
    options = flags.parse_flags(["delete", "dryrun", "delete", "No-Progress", "force"], "push")
    assert options.words == ("delete", "dryrun", "no-progress", "force")
    assert (options.delete, options.dryrun, options.force, options.follow_symlinks) == (True, True, True, True)
    assert options.cli == ["--no-progress"]
    assert flags.parse_flags(["no-follow-symlinks", "no-sign-request", "size-only"], "pull").cli == [
        "--no-follow-symlinks", "--no-sign-request",
    ]


@pytest.mark.parametrize("word", ["exclude", "endpoint-url", "profile", "storage-class"])
def test_value_options_are_refused(word):
    with pytest.raises(FlagError, match=f'"{word}" takes a value'):
        flags.parse_flags([word], "push")


def test_unknown_word_gets_a_did_you_mean():
    with pytest.raises(FlagError, match='Did you mean "delete"'):
        flags.parse_flags(["delet"], "pull")


#: The flag words the usage page promises (docs/usage.rst, "Accepted words"), written
#: out here rather than read from the code, so that dropping one from the code fails.
DOCUMENTED_FLAG_WORDS = [
    "delete", "dryrun", "exact-timestamps", "follow-symlinks", "force-glacier-transfer",
    "ignore-glacier-warnings", "no-follow-symlinks", "no-guess-mime-type", "no-progress",
    "only-show-errors", "quiet", "size-only", "debug", "no-sign-request", "force",
]


@pytest.mark.parametrize("word", DOCUMENTED_FLAG_WORDS)
def test_every_documented_flag_word_is_accepted(word):
    assert flags.parse_flags([word], "push").words == (word,)
    assert flags.parse_flags([word.upper()], "pull").words == (word,)


def test_the_usage_page_lists_exactly_the_documented_flag_words():
    text = (Path(__file__).parent.parent / "docs" / "usage.rst").read_text()
    listed = text.split("Accepted words:", 1)[1].split("``delete``, ``dryrun`` and ``force``", 1)[0]
    assert sorted(re.findall(r"``([a-z-]+)``", listed)) == sorted(DOCUMENTED_FLAG_WORDS)


# settings ----------------------------------------------------------------

@pytest.mark.parametrize("parts, expected", [
    (("projects/2017", "my-project", "data/"), "projects/2017/my-project/data"),
    (("/a//b/", "p", ""), "a/b/p"),
    (("", "p", ""), "p"),
])
def test_join_s3_path(parts, expected):
    assert settings.join_s3_path(*parts) == expected


@pytest.mark.parametrize("bad", ["a/../b", "a//b", "s3://bkt/a", "./a", "drafts[1]", "a/*", "why?"])
def test_bad_s3_paths_are_refused(bad):
    with pytest.raises(ConfigError, match="s3_path"):
        settings.normalise_s3_path(bad, "config/datakit-data.json")


def test_s3_path_outer_slashes_are_normalised():
    assert settings.normalise_s3_path("/projects/x/", "f") == "projects/x"
    assert settings.normalise_s3_path("/", "f") == ""


@pytest.mark.parametrize("bad", ["ab", "My_Bucket", "-start", "a..b", "192.168.1.1", "x" * 64])
def test_bucket_names_follow_s3_rules(bad):
    with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
        settings.check_bucket_name(bad, "f")


def test_bucket_with_scheme_gets_a_hint():
    with pytest.raises(ConfigError, match='Drop the "s3://".*"my-bucket"'):
        settings.check_bucket_name("s3://my-bucket/path", "f")


def test_project_config_wins_over_global_runtime_defaults():
    merged = settings.merge(
        {"aws_user_profile": "g", "s3_endpoint_url": "http://g", "s3_bucket": "gb", "s3_path_prefix": "x"},
        {"s3_bucket": "pb", "s3_path": "p", "aws_user_profile": "p"},
    )
    assert merged == {"aws_user_profile": "p", "s3_endpoint_url": "http://g", "s3_bucket": "pb", "s3_path": "p"}


def test_default_profile_is_left_to_the_aws_cli():
    got = settings.settings_from({"s3_bucket": "bkt", "s3_path": "/p/", "aws_user_profile": "default"}, "f")
    assert got == make(path="p")
    assert got.s3_url == "s3://bkt/p/"
    assert make(path="").s3_url == "s3://bkt/"


def test_missing_s3_path_names_the_key():
    with pytest.raises(ConfigError, match='no "s3_path"'):
        settings.settings_from({"s3_bucket": "bkt"}, "config/datakit-data.json")


def test_unknown_key_suggests_the_near_miss():
    message = settings.unknown_key_message("f.json", "s3_buket", settings.PROJECT_KEYS)
    assert 'Did you mean "s3_bucket"?' in message and "f.json" in message


def test_read_config_rejects_non_objects_and_wrong_types(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        settings.read_config(str(path))
    path.write_text('{"s3_bucket": ["a"]}')
    with pytest.raises(ConfigError, match='"s3_bucket" must be a string'):
        settings.read_config(str(path), settings.PROJECT_KEYS)
    assert settings.read_config(str(tmp_path / "missing.json")) is None


# aws ---------------------------------------------------------------------

def test_upload_and_download_arguments():
    aws_cmd = ["aws"]
    assert aws_cli.upload_args(make(), ["--quiet"], aws_cmd) == [
        "aws", "s3", "sync", "data/", "s3://bkt/proj/", "--quiet", "--cli-connect-timeout", "5",
        "--cli-read-timeout", "15",
    ]
    assert aws_cli.download_args(make(profile="team", endpoint="http://h:1"), [], aws_cmd) == [
        "aws", "s3", "sync", "s3://bkt/proj/", "data/",
        "--cli-connect-timeout", "5", "--cli-read-timeout", "15", "--profile", "team", "--endpoint-url", "http://h:1",
    ]


def test_default_aws_is_the_awscli_beside_the_plugin():
    assert aws_cli.aws_command({}) == [sys.executable, "-m", "awscli"]
    assert aws_cli.aws_command({"DATAKIT_DATA_AWS": "/opt/aws v2"}) == ["/opt/aws", "v2"]


def test_url_credentials_are_never_passed_to_the_aws_cli():
    args = aws_cli.upload_args(make(endpoint="https://key:p@ss/word@s3.example"), [], [sys.executable, "-m", "awscli"])
    assert args[args.index("--endpoint-url") + 1] == "https://s3.example"
    assert aws_cli.describe(args).startswith("aws s3 sync data/ s3://bkt/proj/")


@pytest.mark.parametrize("url, secret", [
    ("https://key:secret@s3.example", "secret"),
    ("https://key:p@ss@word@s3.example/x", "p@ss@word"),
    ("http://u:pa/ss@host:9", "pa/ss"),
    ("http://u:sp%40ce@host", "sp%40ce"),
])
def test_masking_hides_configured_credentials_whatever_they_hold(url, secret):
    from datakit_data import masking

    masking.remember(url)
    shown = masking.mask_secrets(f"could not connect to {url}: {secret}")
    assert secret not in shown and shown.startswith("could not connect to http")


def test_failures_are_explained_in_one_line():
    s = make(profile="team")
    nobucket = failures.explain_failure(1, ["fatal error: An error occurred (NoSuchBucket) when ..."], s, "push")
    assert 'bucket "bkt" does not exist' in str(nobucket)
    refused = failures.explain_failure(1, ["fatal error: An error occurred (InvalidAccessKeyId) ..."], s, "pull")
    assert '"team"' in str(refused) and "refused the credentials" in str(refused)
    profile = failures.explain_failure(255, ["", "The config profile (team) could not be found"], s, "push")
    assert isinstance(profile, ConfigError) and '"team" was not found' in str(profile)
    skipped = failures.explain_failure(2, ["warning: Skipping file data/x y.csv. File does not exist."], s, "push")
    assert isinstance(skipped, SkippedFiles) and "data/x y.csv (file does not exist)" in str(skipped)
    assert isinstance(failures.explain_failure(130, [], s, "pull"), Interrupted)
    other = failures.explain_failure(1, ["fatal error: something odd"], s, "push")
    assert "the AWS CLI exited with code 1: something odd" in str(other)
    for error in (nobucket, refused, profile, skipped, other):
        assert "\n" not in str(error)
    # The reason travels as a fact, not to be cut back out of the message.
    assert nobucket.reason.startswith('bucket "bkt" does not exist on AWS S3.')
    in_process = failures.explain_failure(1, ["something odd"], s, "list", code="NoSuchBucket", cli=False)
    assert str(in_process).startswith('Listing s3://bkt/proj/ failed: bucket "bkt" does not exist')


# project -----------------------------------------------------------------

def test_placeholders_expand():
    values = project.placeholders("story", datetime.date(2026, 3, 7), "ana")
    assert project.expand("p/$YEAR/$MONTH/$DAY/$USERNAME/$PROJECTNAME/$OTHER", values) == (
        "p/2026/03/07/ana/story/$OTHER"
    )


def test_project_config_precedence():
    values = project.placeholders("story", datetime.date(2026, 1, 2), "ana")
    glob = {"s3_bucket": "g-$YEAR", "aws_user_profile": "gp", "s3_path_prefix": "p/$YEAR", "s3_path_suffix": "data"}
    assert project.project_config("story", glob, {}, values) == {
        "aws_user_profile": "gp", "s3_bucket": "g-2026", "s3_path": "p/2026/story/data",
    }
    options = {"s3_bucket": "o", "aws_user_profile": None, "s3_path": "/x/y/", "s3_endpoint_url": None}
    assert project.project_config("story", glob, options, values) == {
        "aws_user_profile": "gp", "s3_bucket": "o", "s3_path": "x/y",
    }


def test_retry_policy_is_bounded_unless_the_user_set_one():
    assert aws_cli.child_env({"PATH": "/bin"}) == {"PATH": "/bin", "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "3"}
    assert aws_cli.child_env({"AWS_MAX_ATTEMPTS": "10"}) == {"AWS_MAX_ATTEMPTS": "10"}


# awsconfig ---------------------------------------------------------------

from datakit_data import awsconfig  # noqa: E402


def with_s3_setting(tmp_path, text, section, value):
    path = tmp_path / "config"
    path.write_text(text)
    awsconfig.set_s3_value(str(path), section, "max_concurrent_requests", value)
    return path.read_text()


def test_s3_setting_is_added_to_an_empty_config(tmp_path):
    assert with_s3_setting(tmp_path, "", "default", "64") == "[default]\ns3 =\n    max_concurrent_requests = 64\n"


def test_s3_setting_keeps_every_other_line_of_the_users_config(tmp_path):
    text = (
        "# my settings\n[default]\nregion = eu-west-1\ns3 =\n    multipart_chunksize = 16MB\n"
        "    max_concurrent_requests = 4\n\n[profile team]\nregion = us-east-1\n"
    )
    got = with_s3_setting(tmp_path, text, "default", "64")
    assert got == text.replace("max_concurrent_requests = 4", "max_concurrent_requests = 64")

    team = with_s3_setting(tmp_path, text, "profile team", "32")
    assert team == text + "s3 =\n    max_concurrent_requests = 32\n"


def test_s3_setting_joins_an_existing_nested_block(tmp_path):
    text = "[profile a]\ns3 =\n    multipart_threshold = 64MB\nregion = x\n"
    assert with_s3_setting(tmp_path, text, "profile a", "20") == (
        "[profile a]\ns3 =\n    multipart_threshold = 64MB\n    max_concurrent_requests = 20\nregion = x\n"
    )


def test_section_names():
    assert awsconfig.section_name(None) == "default"
    assert awsconfig.section_name("default") == "default"
    assert awsconfig.section_name("team") == "profile team"


@pytest.mark.parametrize("value", [0, -1, 1001, "many", 2.5, True])
def test_max_concurrent_requests_must_be_a_sensible_whole_number(value):
    with pytest.raises(ConfigError, match='"max_concurrent_requests" must be a whole number'):
        settings.check_number("f", "max_concurrent_requests", value)
    assert settings.check_number("f", "max_concurrent_requests", "64") == 64


# plan --------------------------------------------------------------------

from datakit_data.plan import Local, Remote, local_etag, make_plan  # noqa: E402


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


@pytest.mark.parametrize("file_size, chunk, expected", [
    (9 * 2**20, 8 * 2**20, 8 * 2**20),
    (9 * 2**20, 1 * 2**20, 5 * 2**20),  # below S3's 5 MiB minimum
    (100_000 * 2**20, 8 * 2**20, 16 * 2**20),  # 12,500 parts of 8 MiB: too many
    (10_000 * 8 * 2**20, 8 * 2**20, 8 * 2**20),  # exactly 10,000 parts
])
def test_part_size_follows_s3_limits(file_size, chunk, expected):
    from datakit_data.plan import part_size

    assert part_size(file_size, chunk) == expected


BASE = {"f": {"size": 1, "mtime_ns": 1, "etag": "e1"}}
SAME_LOCAL, NEW_LOCAL = {"f": Local(1, 1)}, {"f": Local(2, 2)}
SAME_REMOTE, NEW_REMOTE = {"f": Remote(1, "e1")}, {"f": Remote(1, "e2")}


@pytest.mark.parametrize("direction, local, remote, flags, expected", [
    ("push", NEW_LOCAL, SAME_REMOTE, {}, ("transfer", None)),
    ("push", SAME_LOCAL, NEW_REMOTE, {}, ("kept", "changed on S3 since the last sync; not overwritten")),
    ("push", SAME_LOCAL, NEW_REMOTE, {"force": True}, ("transfer", None)),
    ("push", NEW_LOCAL, NEW_REMOTE, {}, ("conflicts", "changed on both sides")),
    ("push", {}, SAME_REMOTE, {}, ("kept", "deleted locally; use `delete` to remove it on S3 too")),
    ("push", {}, SAME_REMOTE, {"delete": True}, ("delete", None)),
    ("push", {}, NEW_REMOTE, {"delete": True}, ("conflicts", "deleted locally but changed on S3")),
    ("pull", SAME_LOCAL, NEW_REMOTE, {}, ("transfer", None)),
    ("pull", NEW_LOCAL, SAME_REMOTE, {}, ("kept", "changed locally since the last sync; not overwritten")),
    ("pull", NEW_LOCAL, SAME_REMOTE, {"force": True}, ("kept", "changed locally since the last sync; not overwritten")),
    ("pull", {}, SAME_REMOTE, {"force": True}, ("transfer", None)),
    ("pull", NEW_LOCAL, NEW_REMOTE, {}, ("conflicts", "changed on both sides")),
    ("pull", NEW_LOCAL, NEW_REMOTE, {"force": True}, ("transfer", None)),
    ("pull", SAME_LOCAL, {}, {"delete": True}, ("delete", None)),
    ("pull", NEW_LOCAL, {}, {"delete": True}, ("conflicts", "deleted on S3 but changed locally")),
    ("pull", SAME_LOCAL, SAME_REMOTE, {"delete": True}, ("unchanged", None)),
])
def test_plan_decisions(direction, local, remote, flags, expected):
    plan = make_plan(direction, local, remote, BASE, **flags, same=lambda path: False)
    kind, why = expected
    if kind == "unchanged":
        assert plan.unchanged == 1 and not (plan.transfer or plan.delete or plan.conflicts or plan.kept)
    elif why is None:
        assert getattr(plan, kind) == ["f"]
    else:
        assert getattr(plan, kind) == {"f": why}


def test_identical_content_is_a_baseline_not_a_conflict():
    plan = make_plan("pull", NEW_LOCAL, NEW_REMOTE, BASE, same=lambda path: True)
    assert plan.baseline == ["f"] and not plan.conflicts and not plan.transfer


def test_objects_never_synced_are_kept_by_delete():
    plan = make_plan("push", {}, {"theirs": Remote(1, "x")}, {}, delete=True)
    assert plan.kept == {"theirs": "only on S3, never synced; kept"} and not plan.delete


def test_a_moved_time_with_recorded_content_is_unchanged_and_refreshed():
    record = {"f": {"size": 1, "mtime_ns": 1, "ino": 7, "etag": "e1"}}
    asked = []

    def as_recorded(path):
        asked.append(path)
        return True

    touched = {"f": Local(1, 99, 7)}
    plan = make_plan("push", touched, {"f": Remote(1, "e1")}, record, as_recorded=as_recorded)
    assert (plan.transfer, plan.unchanged, plan.refresh, asked) == ([], 1, ["f"], ["f"])
    # Same size, time and inode: the content is not read at all.
    asked.clear()
    plan = make_plan("push", {"f": Local(1, 1, 7)}, {"f": Remote(1, "e1")}, record, as_recorded=as_recorded)
    assert (plan.unchanged, plan.refresh, asked) == (1, [], [])
    # Another size: changed, without reading it.
    plan = make_plan("push", {"f": Local(2, 1, 7)}, {"f": Remote(1, "e1")}, record, as_recorded=as_recorded)
    assert (plan.transfer, asked) == (["f"], [])


def test_pull_restores_what_was_deleted_locally_even_when_s3_changed_it():
    record = {"f": {"size": 1, "mtime_ns": 1, "etag": "e1"}}
    for remote in ({"f": Remote(1, "e1")}, {"f": Remote(1, "e2")}):
        plan = make_plan("pull", {}, remote, record)
        assert (plan.transfer, plan.restored, plan.conflicts) == (["f"], ["f"], {})


def test_the_configuration_reference_documents_exactly_the_declared_settings():
    text = (Path(__file__).parent.parent / "docs" / "configuration.rst").read_text()
    project_part = text.split("Project config\n---", 1)[1].split("Global config\n---", 1)[0]
    global_part = text.split("Global config\n---", 1)[1].split("Placeholders\n~~~", 1)[0]

    def documented(part):
        terms = [line for line in part.splitlines() if line.startswith("``")]
        return sorted(name for line in terms for name in re.findall(r"``([a-z0-9_]+)``", line))

    assert documented(project_part) == sorted(settings.PROJECT_KEYS)
    assert documented(global_part) == sorted(settings.GLOBAL_KEYS)


def test_datakit_config_and_init_follow_the_settings_table():
    from datakit_data.configs import CONFIG_SPEC

    assert [field.name for field in CONFIG_SPEC] == list(settings.GLOBAL_KEYS)
    assert settings.OPTION_KEYS == ("aws_user_profile", "s3_bucket", "s3_path", "s3_endpoint_url")
    assert settings.RUNTIME_GLOBAL_KEYS == ("aws_user_profile", "s3_endpoint_url", "max_concurrent_requests", "exclude")


def test_every_module_imports_without_posix_only_modules():
    # Windows has no fcntl, resource, termios, grp or pwd: importing the package
    # there must not fail (lock.py relies on filelock, which picks the OS's lock).
    script = (
        "import sys, pkgutil, importlib, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "for name in ('fcntl', 'resource', 'termios', 'grp', 'pwd'):\n"
        "    sys.modules[name] = None\n"
        "import datakit_data\n"
        "names = [m.name for m in pkgutil.iter_modules(datakit_data.__path__)]\n"
        "for name in names:\n"
        "    importlib.import_module('datakit_data.' + name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 15


# pull scope: which objects one `aws s3 sync` may download ----------------

def _downloaded_by(scope, keys, root="bkt/proj"):
    """The keys the AWS CLI's own filter lets through with these options."""
    from awscli.customizations.s3.filters import Filter

    options = scope.options
    patterns = [(options[i].lstrip("-"), options[i + 1]) for i in range(0, len(options), 2)]
    infos = [types.SimpleNamespace(src=f"{root}/{key}", src_type="s3") for key in keys]
    return {info.src[len(root) + 1:] for info in Filter(patterns, root, "/tmp/stage/data").call(infos)}


def test_pull_scope_includes_exactly_the_wanted_objects_with_few_patterns():
    present = [f"raw/{i}.csv" for i in range(100)] + [f"clean/{i}.csv" for i in range(50)] + ["notes.txt", "a*b?[c].csv"]
    wanted = {"raw/3.csv", "raw/97.csv", "a*b?[c].csv"} | {f"clean/{i}.csv" for i in range(50)}
    scope = aws_cli.pull_scope(wanted, present, {"raw/../../evil": "a '..' folder name"})
    assert scope.placeholders == []
    # A folder wanted whole is one pattern; the others one each.
    assert scope.options.count("--include") == 4 and "clean/*" in scope.options
    assert _downloaded_by(scope, [*present, "raw/../../evil"]) == wanted


def test_pull_scope_without_filters_when_everything_is_wanted():
    present = ["a.csv", "b/c.csv"]
    assert aws_cli.pull_scope(set(present), present, {}) == aws_cli.PullScope([], [])
    # A refused key is never everything-wanted: it is left out.
    scope = aws_cli.pull_scope(set(present), present, {"b/..": "a '..' folder name"})
    assert _downloaded_by(scope, [*present, "b/.."]) == set(present)


def test_pull_scope_of_a_large_scattered_plan_uses_placeholders():
    present = [f"raw/{i}.csv" for i in range(100)]
    wanted = {f"raw/{i}.csv" for i in range(0, 100, 2)}  # 50 patterns would be needed
    scope = aws_cli.pull_scope(wanted, present, {"x/../y": "a '..' folder name"})
    assert sorted(scope.placeholders) == sorted(set(present) - wanted)
    assert scope.options == ["--exclude", "*/../*"]  # its family, whatever the number of such keys


def test_pull_scope_where_patterns_ignore_case_leaves_out_what_it_cannot_tell_apart(monkeypatch):
    # On Windows the AWS CLI's fnmatch ignores case and reads \ as /: a wanted key
    # equal to a refused one but for case must not be downloaded with it.
    import fnmatch
    import ntpath

    present = ["A.csv", "raw/x.csv", "Raw2/y.csv", "keep/z.csv"]
    refused = {"a.csv": "differs only by case", "raw2/Y.csv": "differs only by case"}
    wanted = {"A.csv", "raw/x.csv", "Raw2/y.csv"}
    scope = aws_cli.pull_scope(wanted, present, refused, fold=ntpath.normcase)
    assert scope.clashes == ["A.csv", "Raw2/y.csv"]
    monkeypatch.setattr(fnmatch.os, "path", ntpath)  # fnmatch as on Windows
    assert _downloaded_by(scope, [*present, *refused]) == {"raw/x.csv"}
    # Where case matters, nothing clashes.
    assert aws_cli.pull_scope(wanted, present, refused, fold=str).clashes == []


def test_of_a_read_timeout_and_a_refused_connection_the_later_is_explained():
    s = make()
    hung_then_gone = ["Read timeout on endpoint URL: x", "Could not connect to the endpoint URL: x"]
    assert "could not connect" in str(failures.explain_failure(1, hung_then_gone, s, "push"))
    assert "did not answer" in str(failures.explain_failure(1, hung_then_gone[::-1], s, "push"))


def test_the_version_current_at_a_moment():
    from datakit_data.versions import choose_at

    def v(path, time, vid, deleted=False, latest=False):
        return {"path": path, "time": time, "version_id": vid, "deleted": deleted, "latest": latest}

    listed = [  # as S3 lists them: versions newest first, deletion markers after
        v("x.csv", "2026-11-14T12:00:30Z", "v2"), v("x.csv", "2026-11-14T12:00:10Z", "v1"),
        v("x.csv", "2026-11-14T12:00:30Z", "gone", deleted=True, latest=True),
        v("y.csv", "2026-11-14T12:00:20Z", "y1", latest=True),
    ]
    moment = datetime.datetime(2026, 11, 14, 12, 0, 15, tzinfo=datetime.timezone.utc).timestamp()
    assert {p: c["version_id"] for p, c in choose_at(listed, moment).items()} == {"x.csv": "v1"}
    later = moment + 60
    # A deletion in the same second as an upload: the current one (the deletion) wins.
    assert {p: c["version_id"] for p, c in choose_at(listed, later).items()} == {"x.csv": "gone", "y.csv": "y1"}


@pytest.mark.parametrize("text, local", [
    ("2026-11-14", datetime.datetime(2026, 11, 14, 23, 59, 59, 999999)),
    ("2026-11-14T15:30", datetime.datetime(2026, 11, 14, 15, 30)),
    ("2026-11-14 15:30:00", datetime.datetime(2026, 11, 14, 15, 30)),
])
def test_as_of_times_are_local_unless_a_zone_is_given(text, local):
    from datakit_data.versions import parse_as_of

    assert parse_as_of(text, False).moment == local.astimezone().timestamp()
    assert parse_as_of("2026-11-14T15:30:00Z", False).moment == datetime.datetime(
        2026, 11, 14, 15, 30, tzinfo=datetime.timezone.utc).timestamp()
    assert parse_as_of("3HLGFqX1.abc", True).version_id == "3HLGFqX1.abc"
    with pytest.raises(FlagError, match="is not a date"):
        parse_as_of("3HLGFqX1.abc", False)  # a version id only with one file


@pytest.mark.parametrize("status, code, message, matching, expected", [
    (200, "", "", True, "sent"),
    (412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", True, "refused"),
    (412, "", "", False, "refused"),  # no body: botocore's code is the status
    (404, "NoSuchKey", "", True, "refused"),  # If-Match on a key deleted meanwhile (AWS)
    (404, "NoSuchBucket", "", True, None),
    (409, "ConditionalRequestConflict", "", False, "refused"),  # after the retries
    (409, "OperationAborted", "", False, None),
    (501, "NotImplemented", "A header you provided implies functionality that is not implemented", False,
     "unsupported"),
    (400, "NotImplemented", "", True, "unsupported"),
    (400, "InvalidArgument", "Unsupported header 'If-None-Match' received", False, "unsupported"),
    (400, "InvalidArgument", "Invalid storage class", False, None),
    (400, "InvalidPart", "One or more of the specified parts could not be found; the specified ETag may not "
     "match", True, None),
    (403, "AccessDenied", "", True, None),
    (500, "InternalError", "", True, None),
])
def test_what_a_response_to_a_conditional_write_means(status, code, message, matching, expected):
    from datakit_data.conditions import verdict

    assert verdict(status, code, message, matching) == expected


def test_refused_uploads_are_told_apart_from_other_lines_of_the_aws_cli():
    from datakit_data.conditions import refusal_line

    line = ("upload failed: data/a b.csv to s3://bkt/p/a b.csv An error occurred (PreconditionFailed) when "
            "calling the PutObject operation: At least one of the pre-conditions you specified did not hold")
    assert refusal_line(line) == ("a b.csv", "PreconditionFailed")
    assert refusal_line("upload failed: data/d/x to s3://b/d/x An error occurred (412) when calling the "
                        "CompleteMultipartUpload operation: Precondition Failed") == ("d/x", "412")
    # The server's own message cannot pass a failure off as a refusal.
    spoof = ("upload failed: data/x to s3://b/x An error occurred (AccessDenied) when calling the PutObject "
             "operation: An error occurred (PreconditionFailed) when calling the PutObject operation")
    assert refusal_line(spoof) == ("x", "AccessDenied")
    assert refusal_line("warning: Skipping file /x. File does not exist.") is None
    assert refusal_line("fatal error: An error occurred (NoSuchBucket) when calling the ListObjectsV2") is None


def test_the_guard_reads_back_what_the_launcher_reported_and_nothing_else(tmp_path):
    from datakit_data.conditions import Guard
    from datakit_data.settings import Settings

    settings = Settings(bucket="bkt", path="proj", profile=None, endpoint_url=None)
    report = tmp_path / "guard.jsonl"
    guard = Guard(settings, {"a.csv": "e1", "b.csv": None, "c.csv": "e3"}, str(report))
    assert guard.message()["expect"] == {"proj/a.csv": "e1", "proj/b.csv": None, "proj/c.csv": "e3"}
    report.write_text(
        '{"key": "proj/a.csv", "result": "sent", "code": "200"}\n'
        '{"key": "proj/b.csv", "result": "refused", "code": "PreconditionFailed"}\n'
        '{"key": "proj/other.csv", "result": "refused", "code": "PreconditionFailed"}\n'  # not ours
        '["not", "an", "entry"]\n'
        '{"key": "proj/c.csv", "result": "unsupported", "code": "NotImpl'  # cut short by a kill
    )
    found = guard.read()
    assert found.sent == {"a.csv"}
    assert found.refused == {"b.csv": "PreconditionFailed"}
    assert found.unsupported == {} and found.explains("b.csv", "PreconditionFailed")
    assert not found.explains("a.csv", "PreconditionFailed") and not found.explains("b.csv", "AccessDenied")


def test_what_an_endpoint_supports_is_remembered_per_endpoint(tmp_path):
    from datakit_data.conditions import Memory, protection
    from datakit_data.layout import Layout
    from datakit_data.settings import Settings

    layout = Layout(str(tmp_path))
    one = Settings(bucket="bkt", path="p", profile=None, endpoint_url="http://127.0.0.1:1")
    other = Settings(bucket="bkt", path="p", profile=None, endpoint_url="http://127.0.0.1:2")
    assert protection(Memory(layout), one, hooks=True)["why"].endswith("(not yet tried on this server)")
    assert Memory(layout).learn(one, "writes", "unsupported", "NotImplemented") is True
    assert Memory(layout).learn(one, "writes", "unsupported", "NotImplemented") is False  # said once
    assert Memory(layout).learn(other, "writes", "enforced") is False
    assert not Memory(layout).supported(one) and Memory(layout).supported(other)
    assert protection(Memory(layout), one, hooks=True)["mode"] == "checked after upload only"
    assert protection(Memory(layout), other, hooks=True)["why"] == "the server enforces conditional writes"
    assert protection(Memory(layout), other, hooks=False)["mode"] == "checked after upload only"
    (tmp_path / ".datakit-data" / "conditions.json").write_text("{not json")
    assert Memory(layout).supported(one)  # damaged: learned again


def test_what_the_scan_could_not_look_at_is_left_alone_with_everything_under_it():
    from datakit_data.plan import left_alone

    record = {p: {"size": 1, "mtime_ns": 1, "etag": "e1"} for p in ("raw", "raw/x", "rawer", "dir/y", "l/z")}
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


@pytest.mark.parametrize("name, refused", [
    ("a" * 255, False),  # the AWS CLI cuts ASCII names to 246 characters: fine
    ("é" * 123, False),  # 246 bytes + 9
    ("é" * 124, True),  # 248 bytes + 9 > 255
    ("dir/" + "é" * 124, True),
    ("é" * 124 + "/x", False),  # a folder name: no temporary name is made for it
])
def test_names_the_aws_cli_cannot_download_are_refused(name, refused):
    from datakit_data.names import key_problem

    assert (key_problem(name) is not None) == refused


def test_pull_scope_of_a_folder_whose_name_holds_brackets_is_kept_to_that_folder():
    # `pull data/raw[1]/`: the AWS CLI joins patterns onto its folder unescaped.
    assert aws_cli.plain_root("raw[1]/2024/") == "" and aws_cli.plain_root("a/b*/c/") == "a/"
    assert aws_cli.plain_root("a/b/") == "a/b/"
    present = ["raw[1]/a.csv", "raw[1]/b.csv", "raw[1]/c/d.csv", "raw1/a.csv", "rawx/a.csv", "other.csv"]
    for wanted in ({"raw[1]/a.csv"}, {"raw[1]/a.csv", "raw[1]/b.csv", "raw[1]/c/d.csv"}):
        inner = [p[len("raw[1]/"):] for p in present if p.startswith("raw[1]/")]
        scope = aws_cli.pull_scope({p[len("raw[1]/"):] for p in wanted}, inner, {})
        moved = aws_cli.PullScope(aws_cli.under_folder(scope.options, "raw[1]/"), [])
        assert _downloaded_by(moved, present) == wanted
    # Placeholders mode: refused keys stay out, nothing outside the folder comes in.
    moved = aws_cli.PullScope(aws_cli.under_folder(["--exclude", "x/../y"], "raw[1]/"), [])
    assert _downloaded_by(moved, [*present, "raw[1]/x/../y"]) == {p for p in present if p.startswith("raw[1]/")}


def test_refused_keys_are_left_out_by_family_and_no_wanted_key_matches_a_family():
    import fnmatch

    from datakit_data.names import key_problem

    hostile = [f"raw/{i}\\x.csv" for i in range(300)] + [f"raw/{i}\x1b[2J.csv" for i in range(300)]
    hostile += [f"raw/{i}/../x" for i in range(300)] + [f"raw//{i}" for i in range(100)] + ["odd\u202etxt.exe"]
    assert all(key_problem(key) for key in hostile)
    wanted = {f"raw/{i}.csv" for i in range(0, 100, 2)}  # scattered: placeholders mode
    present = [f"raw/{i}.csv" for i in range(100)]
    scope = aws_cli.pull_scope(wanted, present, {key: "refused" for key in hostile})

    assert scope.options.count("--exclude") <= len(aws_cli.REFUSED_FAMILIES)
    assert _downloaded_by(scope, [*present, *hostile]) == set(present)
    # Any key a family matches is one names.key_problem refuses: no wanted key is lost.
    samples = ["a.csv", "dir/x.y", ".hidden", "a..b", "x/.y/z", "a b", "é", "[1]", "a*b?", "..a", "a.", "x/y."]
    for family in aws_cli.REFUSED_FAMILIES:
        for key in samples:
            assert not fnmatch.fnmatchcase(key, family) or key_problem(key), (family, key)


@pytest.mark.parametrize("text, how", [
    ("2026-11-01T01:30", "happens twice here (the clocks went back)"),
    ("2026-03-08T02:30", "never happens here (the clocks went forward)"),
    ("2026-11-01T03:30", None),
])
def test_as_of_a_local_time_that_a_dst_change_makes_ambiguous_is_refused(monkeypatch, text, how):
    import time

    from datakit_data.exceptions import FlagError
    from datakit_data.versions import parse_as_of

    monkeypatch.setenv("TZ", "EST5EDT,M3.2.0,M11.1.0")  # US Eastern, without needing tzdata
    time.tzset()
    try:
        if how is None:
            after = datetime.datetime(2026, 11, 1, 8, 30, tzinfo=datetime.timezone.utc)  # 03:30 EST
            assert parse_as_of(text, False).moment == after.timestamp()
            return
        with pytest.raises(FlagError) as refused:
            parse_as_of(text, False)
        message = str(refused.value)
        assert how in message and f"{text}-04:00" in message and f"{text}-05:00" in message
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_same_object_is_known_by_its_second_whether_listed_with_milliseconds_or_not():
    from datakit_data.safesync import _same_object

    listed = Remote(5, "e1", "2026-11-14T15:30:07.412Z")  # MinIO, Ceph
    assert _same_object(Remote(5, "e1", "Sat, 14 Nov 2026 15:30:07 GMT"), listed)  # a HEAD
    assert _same_object(Remote(5, "e1", "2026-11-14T15:30:07.412Z"), listed)
    assert not _same_object(Remote(5, "e1", "Sat, 14 Nov 2026 15:30:08 GMT"), listed)
    assert not _same_object(Remote(5, "e2", "Sat, 14 Nov 2026 15:30:07 GMT"), listed)
