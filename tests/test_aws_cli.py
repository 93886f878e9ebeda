"""aws_cli.py: the AWS CLI's arguments, environment and filters."""
import types


from datakit_data import aws_cli

from helpers import make_settings


def test_upload_and_download_arguments():
    assert aws_cli.upload_args(make_settings(), ["--quiet"]) == [
        "s3", "sync", "data/", "s3://bkt/proj/", "--quiet", "--cli-connect-timeout", "5",
        "--cli-read-timeout", "15",
    ]
    assert aws_cli.download_args(make_settings(profile="team", endpoint="http://h:1"), []) == [
        "s3", "sync", "s3://bkt/proj/", "data/",
        "--cli-connect-timeout", "5", "--cli-read-timeout", "15", "--profile", "team", "--endpoint-url", "http://h:1",
    ]


def test_url_credentials_are_never_passed_to_the_aws_cli():
    args = aws_cli.upload_args(make_settings(endpoint="https://key:p@ss/word@s3.example"), [])
    assert args[args.index("--endpoint-url") + 1] == "https://s3.example"
    assert aws_cli.describe(args).startswith("aws s3 sync data/ s3://bkt/proj/")


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
