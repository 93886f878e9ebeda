"""settings.py: the settings table, the config readers and their checks."""
import json
import re
from pathlib import Path

import pytest

from datakit_data import settings
from datakit_data.exceptions import ConfigError

from helpers import make_settings


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
    assert got == make_settings(path="p")
    assert got.s3_url == "s3://bkt/p/"
    assert make_settings(path="").s3_url == "s3://bkt/"


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


@pytest.mark.parametrize("value", [0, -1, 1001, "many", 2.5, True])
def test_max_concurrent_requests_must_be_a_sensible_whole_number(value):
    with pytest.raises(ConfigError, match='"max_concurrent_requests" must be a whole number'):
        settings.check_number("max_concurrent_requests", value, "f")
    assert settings.check_number("max_concurrent_requests", "64", "f") == 64


def test_the_configuration_reference_documents_exactly_the_declared_settings():
    text = (Path(__file__).parent.parent / "docs" / "configuration.rst").read_text()
    project_part = text.split("Project config\n---", 1)[1].split("Global config\n---", 1)[0]
    global_part = text.split("Global config\n---", 1)[1].split("Placeholders\n~~~", 1)[0]

    def documented(part):
        terms = [line for line in part.splitlines() if line.startswith("``")]
        return sorted(name for line in terms for name in re.findall(r"``([a-z0-9_]+)``", line))

    assert documented(project_part) == sorted(settings.PROJECT_KEYS)
    assert documented(global_part) == sorted(settings.GLOBAL_KEYS)


def test_datakit_config_init_and_settings_follow_the_settings_table(tmp_path):
    """Each row of the table, walked: a new row is covered without editing this test."""
    import dataclasses

    from datakit_data import project
    from datakit_data.configs import CONFIG_SPEC

    assert [field.name for field in CONFIG_SPEC] == [s.name for s in settings.SETTINGS if s.in_global]
    # Every Settings field but the flag words' is one row's, and every row's field is one of them.
    fields = {f.name for f in dataclasses.fields(settings.Settings)} - {"unsigned"}
    assert sorted(s.field for s in settings.SETTINGS if s.field) == sorted(fields)
    values = project.placeholders("story")
    for setting in settings.SETTINGS:
        # Init writes exactly the rows with an option, from the option.
        given = project.project_config("story", {}, {setting.name: "given-value"}, values)
        if setting.option:
            assert given[setting.name] == "given-value", setting.name
        else:
            assert setting.name not in given and setting.name not in project.project_config("story", {}, {}, values)
        # A global value applies at push and pull only for the runtime rows.
        merged = settings.merge({setting.name: ("a",) if setting.patterns else "g"}, {})
        assert (setting.name in merged) == setting.at_runtime, setting.name
        # Each file's value goes through the row's own check, named by file and key.
        bad = tmp_path / f"{setting.name}.json"
        bad.write_text(json.dumps({setting.name: {"not": "a value"}}))
        known = settings.PROJECT_KEYS if setting.in_project else settings.GLOBAL_KEYS
        with pytest.raises(ConfigError, match=f'{re.escape(str(bad))}: "{setting.name}" must be'):
            settings.read_config(str(bad), known)
