"""The sdist is a place to run `make test` from: it holds every file git tracks.

The sdist is built from a copy of the checkout's tracked files, so the checkout
itself gets no build/, dist/ or *.egg-info, and the list of what it must hold
comes from `git ls-files`: a new test, doc or benchmark file that MANIFEST.in
does not take makes this test fail. Caches and build output of the kind a
working tree gathers are planted in the copy and must stay out of the sdist.
"""
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tracked files that only serve git itself.
NOT_SHIPPED = {".gitignore", ".gitattributes"}

# What a working tree gathers and an sdist must not hold.
PLANTED = [
    "tests/__pycache__/conftest.cpython-311-pytest-9.0.0.pyc",
    "datakit_data/__pycache__/s3.cpython-311.pyc",
    "datakit_data/s3.pyc",
    "benchmarks/__pycache__/bench.cpython-311.pyc",
    "docs/_build/html/index.html",
    "docs/_build/doctrees/index.doctree",
    ".pytest_cache/v/cache/lastfailed",
    ".venv/bin/python",
    "build/lib/datakit_data/__init__.py",
    "dist/datakit_data-0.0.0.tar.gz",
    "tests/test_units.py~",
]


def _tracked_files() -> list[str]:
    if not shutil.which("git"):
        pytest.skip("git is not installed: the files the sdist must hold come from `git ls-files`")
    top = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, timeout=60)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != REPO:
        pytest.skip(f"{REPO} is not a git checkout (an unpacked sdist?): "
                    "the files the sdist must hold come from `git ls-files`")
    listed = subprocess.run(["git", "-C", str(REPO), "-c", "core.quotepath=off", "ls-files", "-z"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    # A tracked file deleted in the working tree (and not yet from the index) is gone from a clone too.
    return sorted(name for name in set(listed.split("\0")) if name and (REPO / name).is_file())


def _forbidden(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return (
        "__pycache__" in parts
        or name.endswith((".pyc", ".pyo", "~"))
        or name.startswith(("docs/_build/", "build/", "dist/"))
        or bool({".pytest_cache", ".venv", ".tox"} & set(parts))
    )


def test_sdist_holds_every_tracked_file_and_no_cache(tmp_path):
    pytest.importorskip("build", reason="the `build` package (setup.cfg's test extra) builds the sdist")
    pytest.importorskip("setuptools", reason="setuptools (setup.cfg's test extra) is the build backend")
    tracked = _tracked_files()
    assert "MANIFEST.in" in tracked, "MANIFEST.in is what puts the tests and docs in the sdist"

    src = tmp_path / "src"
    for name in tracked:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    for name in PLANTED:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("left behind in a working tree\n")

    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(src)],
        cwd=src, capture_output=True, text=True, timeout=240,
    )
    assert built.returncode == 0, f"building the sdist failed:\n{built.stdout}\n{built.stderr}"
    # setuptools frames each deprecation in "!!" lines (e.g. "License classifiers are
    # deprecated"): what every `pip install` and `make demo` would show the user.
    boxed = [line for line in (built.stdout + built.stderr).splitlines() if "deprecated" in line.lower()]
    assert not boxed, f"the build warns about setup.cfg: {boxed}"
    tarballs = list(out.glob("*.tar.gz"))
    assert len(tarballs) == 1, tarballs

    with tarfile.open(tarballs[0]) as tar:
        members = [m.name for m in tar.getmembers() if m.isfile()]
    roots = {PurePosixPath(name).parts[0] for name in members}
    assert len(roots) == 1, f"the sdist has more than one top-level folder: {sorted(roots)}"
    inside = {str(PurePosixPath(*PurePosixPath(name).parts[1:])) for name in members}

    missing = [name for name in tracked if name not in NOT_SHIPPED and name not in inside]
    assert not missing, f"tracked files the sdist lacks (add them to MANIFEST.in): {missing}"
    unwanted = sorted(name for name in inside if _forbidden(name))
    assert not unwanted, f"cache or build output in the sdist (exclude it in MANIFEST.in): {unwanted}"
