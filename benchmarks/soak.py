"""`make soak`: colleagues pushing at the same moment, counting what was lost.

Three clones of one project run at once against SeaweedFS on loopback, each for
SOAK_ROUNDS rounds (default 20): pull, append a line of its own to
data/shared/log.txt (lines of different lengths, as real edits are), edit a file of
its own, push. A push that exits 0 acknowledges its line. On a conflict the clone
runs `pull force`, appends its line again and pushes again (up to 10 times).
Afterwards a fresh clone pulls, and every acknowledged line missing from its
log.txt was lost. Run once on a bucket without versions and once on one that keeps
them; prints acknowledged pushes, conflicts and lost lines. It exits 1 if a line
was lost.

Environment: SOAK_ROUNDS, SOAK_CLONES (default 3), SOAK_AWS (a DATAKIT_DATA_AWS to
soak instead of the bundled AWS CLI).
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from s3server import S3Server, isolated_client, isolated_env  # noqa: E402

DATAKIT = str(Path(sys.executable).parent / "datakit")
BUCKET = "soak-plain"
VERSIONED = "soak-versioned"
KEY, SECRET = "soak-key", "soak-secret"


class Clone:
    """One colleague's checkout, running `datakit data ...` in it."""

    def __init__(self, root: Path, name: str, env: dict, config: dict):
        self.root = root
        self.name = name
        self.env = env
        (root / "config").mkdir(parents=True)
        (root / "data" / "shared").mkdir(parents=True)
        (root / "config" / "datakit-data.json").write_text(json.dumps(config))
        self.log = root / "data" / "shared" / "log.txt"

    def run(self, *words: str) -> subprocess.CompletedProcess:
        return subprocess.run([DATAKIT, "data", *words], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=300)

    def append(self, line: str) -> None:
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def soak(server: S3Server, bucket: str, clones: int, rounds: int, work: Path, aws: str | None) -> dict:
    env = isolated_env(work / "home", KEY, SECRET)
    if aws:
        env["DATAKIT_DATA_AWS"] = aws
    config = {"s3_bucket": bucket, "s3_path": f"soak-{os.getpid()}-{bucket}", "s3_endpoint_url": server.endpoint_url}
    team = [Clone(work / f"clone{i}", f"c{i}", env, config) for i in range(clones)]
    counts = {"acknowledged": 0, "conflicts": 0, "gave_up": 0, "errors": 0}
    acknowledged: list[str] = []
    lock = threading.Lock()

    def colleague(clone: Clone, seed: int) -> None:
        rng = random.Random(seed)
        for round_no in range(rounds):
            pulled = clone.run("pull")
            if pulled.returncode != 0:
                clone.run("pull", "force")
            line = f"{clone.name} round {round_no} " + "x" * rng.randint(0, 40)
            for _ in range(10):
                clone.append(line)
                own = clone.root / "data" / clone.name / f"own{rng.randint(0, 3)}.csv"
                own.parent.mkdir(exist_ok=True)
                own.write_text(f"{clone.name} {round_no} {rng.random()}\n")
                pushed = clone.run("push")
                if pushed.returncode == 0:
                    with lock:
                        counts["acknowledged"] += 1
                        acknowledged.append(line)
                    break
                with lock:
                    if "conflict" in pushed.stdout + pushed.stderr:
                        counts["conflicts"] += 1
                    else:
                        counts["errors"] += 1
                        sys.stderr.write(pushed.stderr[-500:] + "\n")
                clone.run("pull", "force")
            else:
                with lock:
                    counts["gave_up"] += 1
            time.sleep(rng.random() * 0.2)

    threads = [threading.Thread(target=colleague, args=(clone, i)) for i, clone in enumerate(team)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fresh = Clone(work / "fresh", "fresh", env, config)
    pulled = fresh.run("pull")
    if pulled.returncode != 0:
        sys.stderr.write(pulled.stderr[-500:] + "\n")
    final = fresh.log.read_text(encoding="utf-8").splitlines() if fresh.log.exists() else []
    counts["lost"] = sum(1 for line in acknowledged if line not in final)
    return counts


def main() -> int:
    rounds = int(os.environ.get("SOAK_ROUNDS", "20"))
    clones = int(os.environ.get("SOAK_CLONES", "3"))
    aws = os.environ.get("SOAK_AWS") or None
    lost = 0
    with tempfile.TemporaryDirectory(prefix="datakit-soak-") as tmp:
        tmp = Path(tmp)
        with S3Server(tmp / "weed", BUCKET) as server:
            client = isolated_client(server.endpoint_url, KEY, SECRET)
            client.create_bucket(Bucket=VERSIONED)
            client.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
            print(f"{clones} clones x {rounds} rounds, AWS CLI: {aws or 'the bundled one'}")
            for bucket in (BUCKET, VERSIONED):
                started = time.monotonic()
                counts = soak(server, bucket, clones, rounds, tmp / bucket, aws)
                lost += counts["lost"]
                kind = "keeps versions" if bucket == VERSIONED else "keeps no versions"
                print(f"bucket that {kind}: {counts['acknowledged']} acknowledged pushes, "
                      f"{counts['conflicts']} conflicts, {counts['errors']} other failures, "
                      f"{counts['gave_up']} rounds given up, {counts['lost']} acknowledged lines lost "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
