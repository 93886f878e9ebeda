"""`make bench`: datakit-data beside plain `aws s3 sync`, on the same trees, through 20 ms of RTT.

Starts SeaweedFS on loopback, puts a TCP proxy in front of it that delays every
chunk by 10 ms each way (S3 is never on loopback for a user), and times, for
each tree: a first push, a no-op push, status, and a pull into an empty folder,
with `datakit data ...` and with `aws s3 sync`. Prints medians and the ratio
datakit / aws. Also times the 500-file push with max_concurrent_requests = 64,
and reports the datakit process's peak memory. It asserts nothing.

Environment: BENCH_REPEAT (default 3), BENCH_TREES (comma-separated: small,many,large).
"""
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from s3proxy import FaultProxy  # noqa: E402
from s3server import S3Server, isolated_env  # noqa: E402

BUCKET = "bench-bucket"
DATAKIT = str(Path(sys.executable).parent / "datakit")
AWS = [sys.executable, "-m", "awscli"]
ONE_WAY_DELAY = 0.010  # seconds each way: 20 ms of round-trip time


def make_tree(root: Path, kind: str) -> int:
    """Write a benchmark tree; returns its size in bytes."""
    rng = random.Random(42)
    total = 0
    if kind == "small":
        for i in range(500):
            size = rng.randint(512, 8192)
            total += write(root / f"part{i % 10}" / f"file{i:04d}.csv", rng.randbytes(size))
    elif kind == "many":
        for i in range(10_000):
            total += write(root / f"d{i // 500:02d}" / f"f{i:05d}.txt", rng.randbytes(1024))
    elif kind == "large":
        block = rng.randbytes(1024 * 1024)
        for i in range(20):
            path = root / f"big{i:02d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                for j in range(50):
                    fh.write(bytes([i, j]) + block[2:])
            total += path.stat().st_size
    return total


def write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


TREES = {
    "small": "500 files, 0.5-8 KiB",
    "many": "10,000 files, 1 KiB",
    "large": "20 files, 50 MiB",
}


class Runner:
    """Runs and times commands in an isolated environment."""

    def __init__(self, tmp: Path, endpoint: str):
        self.tmp = tmp
        self.endpoint = endpoint
        home = tmp / "home"
        (home / ".aws").mkdir(parents=True)
        self.env = isolated_env(home, "bench", "bench-secret")
        self.peak_kib = 0

    def timed(self, args, cwd, env=None, watch_memory=False) -> float:
        started = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=cwd, env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        peak = [0]
        if watch_memory:
            threading.Thread(target=self._watch, args=(proc, peak), daemon=True).start()
        _, err = proc.communicate()
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args))} exited {proc.returncode}: {err.decode()[-500:]}")
        self.peak_kib = max(self.peak_kib, peak[0])
        return elapsed

    @staticmethod
    def _watch(proc, peak):
        status = f"/proc/{proc.pid}/status"
        while proc.poll() is None:
            try:
                with open(status) as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.02)

    def project(self, name: str, s3_path: str, source: Path | None, extra=None) -> Path:
        root = self.tmp / "projects" / name
        shutil.rmtree(root, ignore_errors=True)
        (root / "config").mkdir(parents=True)
        config = {"s3_bucket": BUCKET, "s3_path": s3_path, "s3_endpoint_url": self.endpoint, **(extra or {})}
        (root / "config" / "datakit-data.json").write_text(json.dumps(config))
        if source is not None:
            shutil.copytree(source, root / "data")
        return root


def bench_tree(runner: Runner, kind: str, repeat: int, results: list) -> None:
    source = runner.tmp / "trees" / kind
    size = make_tree(source, kind)
    print(f"\n{TREES[kind]} ({size / 2**20:.1f} MiB), {repeat} run(s) each", flush=True)
    rows = {op: ([], []) for op in ("push", "no-op push", "status", "pull")}
    aws_base = [*AWS, "s3", "sync"]
    endpoint = ["--endpoint-url", runner.endpoint, "--only-show-errors"]
    for rep in range(repeat):
        tag = f"{kind}-{rep}-{time.monotonic_ns()}"
        proj = runner.project(f"dk-{kind}", f"dk/{tag}", source)
        rows["push"][0].append(runner.timed([DATAKIT, "data", "push", "only-show-errors"], proj, watch_memory=True))
        rows["no-op push"][0].append(runner.timed([DATAKIT, "data", "push", "only-show-errors"], proj, watch_memory=True))
        rows["status"][0].append(runner.timed([DATAKIT, "data", "status"], proj, watch_memory=True))
        other = runner.project(f"dk-{kind}-pull", f"dk/{tag}", None)
        rows["pull"][0].append(runner.timed([DATAKIT, "data", "pull", "only-show-errors"], other, watch_memory=True))

        url = f"s3://{BUCKET}/aws/{tag}/"
        rows["push"][1].append(runner.timed([*aws_base, str(source), url, *endpoint], runner.tmp))
        rows["no-op push"][1].append(runner.timed([*aws_base, str(source), url, *endpoint], runner.tmp))
        rows["status"][1].append(runner.timed([*aws_base, str(source), url, "--dryrun", *endpoint], runner.tmp))
        target = runner.tmp / "aws-pull" / tag
        rows["pull"][1].append(runner.timed([*aws_base, url, str(target), *endpoint], runner.tmp))
        shutil.rmtree(target)
    for op, (dk, plain) in rows.items():
        results.append((TREES[kind], op, statistics.median(dk), statistics.median(plain)))
        print_row(results[-1])


def bench_concurrency(runner: Runner, repeat: int, results: list) -> None:
    source = runner.tmp / "trees" / "small"
    if not source.exists():
        make_tree(source, "small")
    print("\n500-file push, max_concurrent_requests 10 (AWS CLI default) vs 64", flush=True)
    for value in (10, 64):
        dk, plain = [], []
        config = runner.tmp / f"aws-config-{value}"
        config.write_text(f"[default]\ns3 =\n    max_concurrent_requests = {value}\n")
        for rep in range(repeat):
            tag = f"conc{value}-{rep}-{time.monotonic_ns()}"
            proj = runner.project("dk-conc", f"dk/{tag}", source, {"max_concurrent_requests": value})
            dk.append(runner.timed([DATAKIT, "data", "push", "only-show-errors"], proj))
            plain.append(runner.timed(
                [*AWS, "s3", "sync", str(source), f"s3://{BUCKET}/aws/{tag}/",
                 "--endpoint-url", runner.endpoint, "--only-show-errors"],
                runner.tmp, env={"AWS_CONFIG_FILE": str(config)},
            ))
        results.append((TREES["small"], f"push, max_concurrent_requests={value}", statistics.median(dk),
                        statistics.median(plain)))
        print_row(results[-1])


def print_row(row) -> None:
    tree, op, dk, plain = row
    print(f"| {tree:<22} | {op:<34} | {dk:8.2f} s | {plain:8.2f} s | {dk / plain:5.2f}x |", flush=True)


def main() -> int:
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    kinds = [k for k in os.environ.get("BENCH_TREES", "small,many,large").split(",") if k]
    help_times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([DATAKIT, "data", "push", "--help"], stdout=subprocess.DEVNULL, check=True)
        help_times.append(time.perf_counter() - started)
    print(f"`datakit data push --help`: median {statistics.median(help_times):.3f} s over 5 runs")
    results = []
    with tempfile.TemporaryDirectory(prefix="datakit-data-bench-") as tmp:
        tmp = Path(tmp)
        with S3Server(tmp / "s3", BUCKET) as server:
            proxy = FaultProxy(server.ports["s3.port"], delay=ONE_WAY_DELAY).start()
            try:
                runner = Runner(tmp, f"http://127.0.0.1:{proxy.port}")
                for kind in kinds:
                    bench_tree(runner, kind, repeat, results)
                    shutil.rmtree(tmp / "trees" / kind, ignore_errors=True) if kind != "small" else None
                bench_concurrency(runner, repeat, results)
            finally:
                proxy.stop()
        print("\n| tree | operation | datakit-data | aws s3 sync | datakit / aws |")
        print("| --- | --- | --- | --- | --- |")
        for tree, op, dk, plain in results:
            print(f"| {tree} | {op} | {dk:.2f} s | {plain:.2f} s | {dk / plain:.2f}x |")
        print(f"\nPeak memory of the datakit process: {runner.peak_kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
