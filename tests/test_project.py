"""project.py: what init writes."""
import datetime


from datakit_data import project


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
