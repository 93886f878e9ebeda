"""A project's name in the bucket: init claims it (issue 33).

Through the real `datakit` and SeaweedFS (which honours If-None-Match), and `rclone
serve s3` (which ignores it).
"""
import concurrent.futures
import json

from helpers import BUCKET, Project, assert_clean_error, ok, output


def init(project, *extra, endpoint=None):
    return project.run("data", "init", "--bucket", BUCKET, "--endpoint-url", endpoint or project.home.endpoint_url,
                       "--path", project.name, *extra)


def test_init_claims_the_name_and_the_marker_never_syncs(project, colleague, bucket):
    ok(init(project))
    marker = json.loads(bucket.objects(project.name, markers=True)[".datakit/project.json"])
    assert marker["id"] == project.config()["project_id"] and marker["name"] == project.name
    project.write("a.csv", "a")
    pushed = ok(project.run("data", "push", "delete"))
    assert ".datakit" not in output(pushed)

    # A colleague's clone (the config from git) joins by the id without a word.
    colleague.clone_config_of(project)
    pulled = ok(colleague.run("data", "pull", "delete"))
    assert colleague.files() == {"a.csv": b"a"} and "claimed" not in output(pulled)
    assert ".datakit/project.json" in bucket.objects(project.name, markers=True)
    assert "left out" not in ok(colleague.run("data", "status")).stdout


def test_two_inits_of_one_name_at_once_one_wins(tmp_path, home, bucket):
    for round in range(4):
        first, second = (Project(tmp_path / f"r{round}-{side}" / "budget-2026", home) for side in ("a", "b"))
        path = f"race-{round}-{tmp_path.name}"
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda p: p.run("data", "init", "--bucket", BUCKET, "--endpoint-url",
                                                    home.endpoint_url, "--path", path), (first, second)))
        won = [r for r in results if r.returncode == 0]
        lost = [r for r in results if r.returncode != 0]
        assert len(won) == 1 and len(lost) == 1, [output(r) for r in results]
        text = assert_clean_error(lost[0])
        assert text.count("\n") == 1 and 'project "budget-2026" (created by ' in text and "Nothing was written" in text
        loser = first if results[0].returncode else second
        assert not loser.config_path.exists()


def test_the_conditional_write_refuses_a_second_claim_that_passed_every_check(project, home, bucket, monkeypatch):
    """The interleaving the checks cannot see: another init claimed the name after this one
    looked. The store's If-None-Match decides."""
    from datakit_data import claim
    from datakit_data.settings import Settings

    from helpers import ACCESS_KEY, SECRET_KEY

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)

    ok(init(project))
    settings = Settings(bucket=BUCKET, path=project.name, profile=None, endpoint_url=home.endpoint_url)
    late = claim.new_marker("budget-2026", "ben", str(project.root))
    won, holder, proven = claim.claim(settings, late)
    assert not won and holder["id"] == project.config()["project_id"] and proven


def test_paths_inside_or_around_a_project_are_refused_and_data_without_a_marker_is_adopted(tmp_path, home, bucket):
    outer = Project(tmp_path / "outer", home)
    ok(outer.run("data", "init", "--bucket", BUCKET, "--endpoint-url", home.endpoint_url, "--path", "desk/outer"))
    inner = Project(tmp_path / "inner", home)
    text = assert_clean_error(inner.run("data", "init", "--bucket", BUCKET, "--endpoint-url", home.endpoint_url,
                                        "--path", "desk/outer/inner"))
    assert "is inside s3://datakit-test/desk/outer/" in text and not inner.config_path.exists()

    bucket.put("desk/old/x.csv", b"from before names were claimed")
    older = Project(tmp_path / "old", home)
    text = assert_clean_error(older.run("data", "init", "--bucket", BUCKET, "--endpoint-url", home.endpoint_url,
                                        "--path", "desk/old"))
    assert "already holds data" in text
    ok(older.run("data", "init", "--bucket", BUCKET, "--endpoint-url", home.endpoint_url, "--path", "desk/old",
                 "--existing"))
    assert ".datakit/project.json" in bucket.objects("desk/old", markers=True)


def test_a_push_to_a_path_another_project_claimed_is_refused(project, bucket):
    ok(init(project))
    config = project.config()
    config["project_id"] = "0" * 32  # made the same morning, elsewhere
    project.config_path.write_text(json.dumps(config))
    project.write("a.csv", "mine")
    text = assert_clean_error(project.run("data", "push"))
    assert "is claimed by project" in text and bucket.objects(project.name) == {}


def test_a_store_that_ignores_the_condition_is_said_to_guard_at_best_effort(project, rclone, rclone_bucket):
    result = init(project, endpoint=rclone.endpoint_url)
    assert result.returncode == 0, output(result)
    assert "the guard against two projects of one name is best effort here" in result.stdout
    assert ".datakit/project.json" in rclone_bucket.objects(project.name, markers=True)
    assert rclone_bucket.keys(project.name, markers=True) == [f"{project.name}/.datakit/project.json"]


def test_projects_lists_the_claimed_projects_and_what_could_not_be_read(tmp_path, home, bucket):
    home.write_global_config({"s3_bucket": BUCKET, "s3_endpoint_url": home.endpoint_url,
                              "s3_path_prefix": f"newsroom-{tmp_path.name}"})
    for name in ("budget-2026", "schools"):
        made = Project(tmp_path / name, home)
        ok(made.run("data", "init"))
        made.write("a.csv", "12345")
        ok(made.run("data", "push"))
    bucket.put(f"newsroom-{tmp_path.name}/unclaimed/x.csv", b"x")

    listed = ok(Project(tmp_path / "budget-2026", home).run("data", "projects"))

    lines = listed.stdout.splitlines()
    assert len(lines) == 2, listed.stdout
    assert lines[0].startswith(f"budget-2026  s3://{BUCKET}/newsroom-{tmp_path.name}/budget-2026/  created by ")
    assert "1 file(s), 5 B" in lines[0] and "last push 20" in lines[0] and lines[1].startswith("schools  ")
    data = json.loads(ok(Project(tmp_path / "schools", home).run("data", "projects", "--json")).stdout)
    assert sorted(p["marker"]["name"] for p in data["projects"]) == ["budget-2026", "schools"]
