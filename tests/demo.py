"""`make demo`: init -> push -> pull on a sample project against a local S3 server.

Everything happens in a temporary folder with its own HOME, DATAKIT_HOME and AWS
files; the SeaweedFS server listens on loopback only and is stopped at the end.
"""
import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from s3server import S3Server, isolated_env  # noqa: E402

DATAKIT = str(Path(sys.executable).parent / "datakit")
BUCKET = "newsroom-data"
SAMPLE = {
    "results.csv": "county,candidate,votes\nAda,Smith,1200\nAda,Jones,980\n",
    "raw/precincts/2026-11-03.csv": "precinct,votes\n001,310\n002,295\n",
    "notes.md": "# Sources\nCounty clerk, certified results.\n",
}


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def datakit(cwd: Path, env: dict, *args: str, expect: int = 0) -> None:
    print(f"$ datakit {' '.join(args)}", flush=True)
    done = subprocess.run([DATAKIT, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    print(f"(exit {done.returncode})", flush=True)
    if done.returncode != expect:
        raise SystemExit(f"demo: expected exit {expect} from `datakit {' '.join(args)}`")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="datakit-data-demo-") as tmp:
        tmp = Path(tmp)
        step(f"Starting a local S3 server (SeaweedFS) with bucket {BUCKET}")
        with S3Server(tmp / "s3", BUCKET) as server:
            print(f"S3 endpoint: {server.endpoint_url}")
            env = isolated_env(tmp / "home", "demo", "demo-secret")

            mine = tmp / "analyst-a" / "election-results"
            mine.mkdir(parents=True)
            step(f"Analyst A sets up {mine.name}")
            datakit(mine, env, "data", "init", "--bucket", BUCKET, "--endpoint-url", server.endpoint_url)
            for name, text in SAMPLE.items():
                path = mine / "data" / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            print(f"Wrote {len(SAMPLE)} files into data/")

            step("Analyst A pushes data/ to S3")
            datakit(mine, env, "data", "push")

            theirs = tmp / "analyst-b" / "election-results"
            (theirs / "config").mkdir(parents=True)
            (theirs / "config" / "datakit-data.json").write_bytes(
                (mine / "config" / "datakit-data.json").read_bytes()
            )
            step("Analyst B, with the project's config from git, pulls the data")
            datakit(theirs, env, "data", "pull")

            step("Both analysts edit results.csv; A pushes first")
            (mine / "data" / "results.csv").write_text(SAMPLE["results.csv"] + "Ada,Write-in,12\n")
            (theirs / "data" / "results.csv").write_text(SAMPLE["results.csv"] + "Bee,Smith,400\n")
            datakit(mine, env, "data", "push")
            step("B checks, then pulls: B's edit is kept and the conflict is named")
            datakit(theirs, env, "data", "status")
            datakit(theirs, env, "data", "pull", expect=1)
            print(f"B's results.csv still ends with: {(theirs / 'data' / 'results.csv').read_text().splitlines()[-1]}")

            step("Result")
            same = [name for name in SAMPLE if name != "results.csv"]
            match, mismatch, errors = filecmp.cmpfiles(mine / "data", theirs / "data", same, shallow=False)
            for name in match:
                print(f"identical on both machines: data/{name}")
            for name in mismatch + errors:
                print(f"DIFFERENT: data/{name}")
            print("Stopping the S3 server.")
        ok = not (mismatch or errors)
        print("Demo finished: " + (
            "push and pull round-tripped every file, and nobody's edit was overwritten." if ok else "files differ!"
        ))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
