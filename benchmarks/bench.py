"""`make bench`: datakit-data beside plain `aws s3 sync` (and s5cmd), through 20 ms of RTT.

Starts SeaweedFS on loopback and puts a TCP proxy in front of it that delays every
chunk by 10 ms each way (S3 is never on loopback for a user). For each tree it
times, with `datakit data ...` and with `aws s3 sync` on the same files: a first
push, a no-op push, status (`--dryrun` for aws), a first pull into a fresh clone,
a push and a pull of 5 edited files, and a push of 5 edited files while 100 others
were only touched (same content, new time). Plain aws s3 sync runs with the same
max_concurrent_requests as datakit's default (32), so that the ratios show what
datakit itself costs. It prints medians, the ratio datakit / reference, and the
datakit process's peak memory. It asserts nothing.

Also: pulling one 50-file folder of a 10,000-file project beside pulling a 50-file
project; the 500-file push with max_concurrent_requests 10, 20, 32 and 64 beside
s5cmd (the fast reference), the same for two 50 MiB files, and, with BENCH_SCALE=1,
a no-op push, status and the push and pull of 5 edited files on 10,000 and 100,000
files beside aws s3 sync and s5cmd (time, peak memory, and how time grows); with
BENCH_SCALE=300k, on 300,000 files too. BENCH_FIRST=1 times the first push of
100,000 new files and the first pull into a fresh clone beside both (48.5
minutes here: datakit and aws take 9-10 minutes per direction, s5cmd 4-5, hence a variable of its own).

Environment: BENCH_REPEAT (runs of the 500-file rows, default 3; the larger trees
run once), BENCH_TREES (comma-separated, default small,many,big), BENCH_CONCURRENCY=0
to skip the concurrency rows, BENCH_PARTIAL=0 to skip the one-folder rows, BENCH_SCALE=1 for the 100,000-file
rows (BENCH_SCALE=300k: and 300,000), BENCH_FIRST=1 for the first push and pull of 100,000 files
(BENCH_FIRST=10k or another tree name: of that tree). BENCH_RESUME=1: a 1 GiB upload
(BENCH_RESUME_MIB) stopped half-way by SIGINT and by SIGKILL, then pushed again: the bytes
each push sent through the proxy. BENCH_PROGRESS=1: the first push of 10,000 files
(BENCH_PROGRESS_TREE) with the live line on a pseudo-terminal beside `no-progress`.
BENCH_LOCK=1: what the lock file costs a no-op push and a 5-edit push of 100,000 files
(BENCH_LOCK_TREE, BENCH_LOCK_ROUNDS), on beside off. BENCH_AWS=/usr/bin/aws runs
datakit with that AWS CLI (DATAKIT_DATA_AWS, e.g. AWS CLI v2) and times plain
`aws s3 sync` with the same CLI.
"""
import datetime
import json
import os
import shlex
import platform
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
from s3server import S3Server, isolated_client, isolated_env  # noqa: E402

from datakit_data.awsconfig import DEFAULT_CONCURRENCY  # noqa: E402

BUCKET = "bench-bucket"
BIN = Path(sys.executable).parent
DATAKIT = str(BIN / "datakit")
S5CMD = str(BIN / "s5cmd")
#: The AWS CLI under test: the bundled one, or BENCH_AWS (e.g. /usr/bin/aws, an AWS CLI v2),
#: which datakit then runs too (DATAKIT_DATA_AWS): each is timed beside itself.
BENCH_AWS = os.environ.get("BENCH_AWS", "").strip()
AWS = shlex.split(BENCH_AWS) if BENCH_AWS else [sys.executable, "-m", "awscli"]
ONE_WAY_DELAY = 0.010  # seconds each way: 20 ms of round-trip time
EDITED = 5
TOUCHED = 100


def write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def make_tree(root: Path, kind: str) -> int:
    """Write a benchmark tree; returns its size in bytes."""
    rng = random.Random(42)
    total = 0
    if kind == "small":
        for i in range(500):
            total += write(root / f"part{i % 10}" / f"file{i:04d}.csv", rng.randbytes(rng.randint(512, 8192)))
    elif kind in ("many", "10k", "100k", "300k"):
        count = {"many": 10_000, "10k": 10_000, "100k": 100_000, "300k": 300_000}[kind]
        block = rng.randbytes(1024)
        for i in range(count):
            # 1 KiB each, every file different (its number in front).
            total += write(root / f"d{i // 500:03d}" / f"f{i:06d}.txt", f"{i:06d}".encode() + block[6:])
    elif kind == "big":
        for i in range(2):
            path = root / f"big{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(f"big file {i}\n".encode())
                fh.truncate(2**30)  # sparse: 1 GiB that costs no disk
            total += path.stat().st_size
    elif kind == "50mib":
        block = rng.randbytes(1024 * 1024)
        for i in range(2):
            path = root / f"mid{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                for j in range(50):
                    fh.write(bytes([i, j]) + block[2:])
            total += path.stat().st_size
    return total


TREES = {
    "small": "500 files, 0.5-8 KiB",
    "many": "10,000 files, 1 KiB",
    "big": "2 files, 1 GiB (sparse)",
    "50mib": "2 files, 50 MiB",
    "10k": "10,000 files, 1 KiB",
    "100k": "100,000 files, 1 KiB",
    "300k": "300,000 files, 1 KiB",
}


def edit_files(root: Path, count: int, salt: str) -> None:
    """Append a line to `count` files spread through the tree (same files every time)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    step = max(1, len(files) // count)
    for path in files[::step][:count]:
        with open(path, "ab") as fh:
            fh.write(f"edited {salt}\n".encode())


def touch_files(root: Path, count: int) -> None:
    """Give `count` files (not the edited ones) a new time and the same content."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    later = time.time() + 5
    for path in files[1::max(1, len(files) // count)][:count]:
        os.utime(path, (later, later))


def _cpu_times() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(n) for n in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 1
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


class Runner:
    """Runs and times commands in an isolated environment."""

    def __init__(self, tmp: Path, endpoint: str, direct: str):
        self.tmp = tmp
        self.endpoint = endpoint
        self.direct = direct  # the server without the proxy, for setting up
        home = tmp / "home"
        (home / ".aws").mkdir(parents=True)
        self.env = isolated_env(home, "bench", "bench-secret")
        if BENCH_AWS:
            self.env["DATAKIT_DATA_AWS"] = BENCH_AWS
        self.peak_kib = 0
        self.last_peak_kib = 0
        # Plain aws s3 sync runs with datakit's default concurrency, so that the ratios
        # show datakit's own costs; one row shows the AWS CLI's own default beside it.
        self.same_concurrency = tmp / "aws-config-same"
        self.same_concurrency.write_text(f"[default]\ns3 =\n    max_concurrent_requests = {DEFAULT_CONCURRENCY}\n")

    def settle(self, quiet: float = 0.1, window: float = 2.0, longest: float = 180.0) -> float:
        """Write dirty pages out, then wait until the machine is idle (below ``quiet`` of
        its cores busy over ``window`` seconds): after 100,000 uploads SeaweedFS goes on
        compacting its store for a while, on the cores the next timed tool needs.
        Returns the seconds waited."""
        started = time.perf_counter()
        os.sync()
        while time.perf_counter() - started < longest:
            before = _cpu_times()
            time.sleep(window)
            after = _cpu_times()
            busy = (after[0] - before[0]) / max(1, after[1] - before[1])
            if busy < quiet:
                break
        return time.perf_counter() - started

    def timed(self, args, cwd, env=None, watch_memory=False) -> float:
        started = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=cwd, env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        peak = [0]
        watcher = None
        if watch_memory:
            watcher = threading.Thread(target=self._watch, args=(proc, peak), daemon=True)
            watcher.start()
        _, err = proc.communicate()
        elapsed = time.perf_counter() - started
        if watcher is not None:
            watcher.join()
        if proc.returncode not in (0,):
            raise RuntimeError(f"{' '.join(map(str, args))} exited {proc.returncode}: {err.decode()[-800:]}")
        self.last_peak_kib = peak[0]
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
            except (OSError, ValueError, IndexError):
                return
            time.sleep(0.01)

    def project(self, name: str, s3_path: str, source: Path | None, extra=None, endpoint=None) -> Path:
        root = self.tmp / "projects" / name
        shutil.rmtree(root, ignore_errors=True)
        (root / "config").mkdir(parents=True)
        config = {"s3_bucket": BUCKET, "s3_path": s3_path, "s3_endpoint_url": endpoint or self.endpoint,
                  **(extra or {})}
        (root / "config" / "datakit-data.json").write_text(json.dumps(config))
        if source is not None:
            shutil.copytree(source, root / "data")
        return root

    def datakit(self, proj: Path, *words: str) -> float:
        return self.timed([DATAKIT, "data", *words], proj, watch_memory=True)

    def s5cmd_sync(self, source: str, target: str, *extra: str) -> float:
        return self.timed([S5CMD, "--endpoint-url", self.endpoint, "sync", *extra, source, target], self.tmp)

    def aws_sync(self, source: str, target: str, *extra: str, env=None) -> float:
        env = {"AWS_CONFIG_FILE": str(self.same_concurrency), **(env or {})}
        return self.timed([*AWS, "s3", "sync", source, target, "--endpoint-url", self.endpoint,
                           "--only-show-errors", *extra], self.tmp, env=env)


class Table:
    """Rows of (tree, operation, datakit seconds, reference seconds, reference name, peak MiB)."""

    def __init__(self):
        self.rows = []

    def add(self, tree, op, dk, ref, ref_name="aws s3 sync", peak_mib=None) -> None:
        row = (tree, op, dk, ref, ref_name, peak_mib)
        self.rows.append(row)
        print(self.format(row), flush=True)

    @staticmethod
    def format(row) -> str:
        tree, op, dk, ref, ref_name, peak = row
        ratio = f"{dk / ref:.2f}x {ref_name}" if ref else ""
        ref_text = f"{ref:.2f} s" if ref else ""
        memory = f"{peak:.0f} MiB" if peak else ""
        return f"| {tree} | {op} | {dk:.2f} s | {ref_text} | {ratio} | {memory} |"


def median_row(table: Table, tree: str, op: str, dk: list, ref: list, peaks: list, ref_name="aws s3 sync"):
    table.add(tree, op, statistics.median(dk), statistics.median(ref) if ref else None, ref_name,
              max(peaks) / 1024 if peaks else None)


def bench_tree(runner: Runner, kind: str, repeat: int, table: Table) -> None:
    """The daily operations on one tree, datakit beside aws s3 sync."""
    source = runner.tmp / "trees" / kind
    size = make_tree(source, kind)
    ops = ["first push", "no-op push", "status", "first pull (fresh clone)",
           f"push, {EDITED} edited", f"pull, {EDITED} edited", f"push, {EDITED} edited + {TOUCHED} touched"]
    if kind == "big":
        ops = ["first push", "no-op push", "first pull (fresh clone)"]
    print(f"\n{TREES[kind]} ({size / 2**20:.0f} MiB), {repeat} run(s) each", flush=True)
    dk = {op: [] for op in ops}
    ref = {op: [] for op in ops}
    peaks = {op: [] for op in ops}
    for rep in range(repeat):
        tag = f"{kind}-{rep}-{time.monotonic_ns()}"
        proj = runner.project(f"dk-{kind}", f"dk/{tag}", source)
        clone = runner.project(f"dk-{kind}-clone", f"dk/{tag}", None)
        mine = runner.tmp / "aws-src" / tag
        shutil.copytree(source, mine)
        theirs = runner.tmp / "aws-clone" / tag
        url = f"s3://{BUCKET}/aws/{tag}/"

        def both(op, dk_run, aws_run):
            dk[op].append(dk_run())
            peaks[op].append(runner.last_peak_kib)
            ref[op].append(aws_run())

        both("first push", lambda: runner.datakit(proj, "push", "only-show-errors"),
             lambda: runner.aws_sync(str(mine), url))
        both("no-op push", lambda: runner.datakit(proj, "push", "only-show-errors"),
             lambda: runner.aws_sync(str(mine), url))
        if "status" in ops:
            both("status", lambda: runner.datakit(proj, "status"),
                 lambda: runner.aws_sync(str(mine), url, "--dryrun"))
        both("first pull (fresh clone)", lambda: runner.datakit(clone, "pull", "only-show-errors"),
             lambda: runner.aws_sync(url, str(theirs)))
        if kind != "big":
            edit_files(proj / "data", EDITED, f"{rep}a")
            edit_files(mine, EDITED, f"{rep}a")
            both(f"push, {EDITED} edited", lambda: runner.datakit(proj, "push", "only-show-errors"),
                 lambda: runner.aws_sync(str(mine), url))
            both(f"pull, {EDITED} edited", lambda: runner.datakit(clone, "pull", "only-show-errors"),
                 lambda: runner.aws_sync(url, str(theirs)))
            edit_files(proj / "data", EDITED, f"{rep}b")
            edit_files(mine, EDITED, f"{rep}b")
            touch_files(proj / "data", TOUCHED)
            touch_files(mine, TOUCHED)
            both(f"push, {EDITED} edited + {TOUCHED} touched", lambda: runner.datakit(proj, "push", "only-show-errors"),
                 lambda: runner.aws_sync(str(mine), url))
        shutil.rmtree(mine)
        shutil.rmtree(theirs, ignore_errors=True)
        shutil.rmtree(proj)
        shutil.rmtree(clone)
    for op in ops:
        median_row(table, TREES[kind], op, dk[op], ref[op], peaks[op])
    shutil.rmtree(source)


def bench_concurrency(runner: Runner, repeat: int, table: Table) -> None:
    """First push with several max_concurrent_requests, beside s5cmd's defaults."""
    for kind in ("small", "50mib"):
        source = runner.tmp / "trees" / f"conc-{kind}"
        make_tree(source, kind)
        print(f"\n{TREES[kind]}: first push by max_concurrent_requests, beside s5cmd", flush=True)
        s5, plain = [], []
        for rep in range(repeat):
            plain.append(runner.aws_sync(str(source), f"s3://{BUCKET}/aws/{kind}-{rep}-{time.monotonic_ns()}/",
                                         env={"AWS_CONFIG_FILE": os.devnull}))
            s5.append(runner.timed(
                [S5CMD, "--endpoint-url", runner.endpoint, "cp", f"{source}/*", f"s3://{BUCKET}/s5/{kind}-{rep}-{time.monotonic_ns()}/"],
                runner.tmp))
        for value in (None, 10, 20, 32, 64):
            times, peaks = [], []
            for rep in range(repeat):
                tag = f"conc{value}-{kind}-{rep}-{time.monotonic_ns()}"
                extra = {} if value is None else {"max_concurrent_requests": value}
                proj = runner.project("dk-conc", f"dk/{tag}", source, extra)
                times.append(runner.datakit(proj, "push", "only-show-errors"))
                peaks.append(runner.last_peak_kib)
            label = "first push, default" if value is None else f"first push, max_concurrent_requests={value}"
            median_row(table, TREES[kind], label, times, s5, peaks, "s5cmd")
            if value is None:
                median_row(table, TREES[kind], "first push, default", times, plain, peaks, "aws s3 sync at its default (10)")
        shutil.rmtree(source)


def bench_scale(runner: Runner, table: Table, kinds: list[str]) -> None:
    """The daily operations on 10,000, 100,000 (and, asked, 300,000) files of 1 KiB,
    datakit beside plain aws s3 sync and s5cmd on the same tree and prefix, one run
    each: no-op push, status, push and pull of 5 edited files; time, datakit's peak
    memory, and how time grows with the tree."""
    print(f"\nScale: {', '.join(TREES[k] for k in kinds)}, one run each (set up without the proxy)", flush=True)
    measured = {}
    for kind in kinds:
        source = runner.tmp / "trees" / kind
        make_tree(source, kind)
        tag = f"scale-{kind}-{time.monotonic_ns()}"
        url = f"s3://{BUCKET}/dk/{tag}/"
        proj = runner.project(f"dk-{kind}", f"dk/{tag}", None)
        source.rename(proj / "data")
        started = time.perf_counter()
        # Set up fast: s5cmd uploads the tree straight to the server, then a push
        # finds every file identical and records them (reading each once).
        runner.timed([S5CMD, "--endpoint-url", runner.direct, "--numworkers", "64", "cp",
                      f"{proj / 'data'}/*", url], runner.tmp)
        runner.datakit(proj, "push", "only-show-errors")
        # Checkouts as they were before the edits: datakit's (its record too), aws's, s5cmd's.
        clone = runner.tmp / "projects" / f"dk-{kind}-clone"
        shutil.copytree(proj, clone)
        runner.datakit(clone, "pull", "only-show-errors")  # a copy's new inodes: recorded once
        theirs = {name: runner.tmp / f"{name}-{kind}" for name in ("aws", "s5cmd")}
        for copy in theirs.values():
            shutil.copytree(proj / "data", copy)
        # The copies above are still being written back to disk: the first timed tool
        # (datakit) would share the disk and the cores with that. Written out first.
        os.sync()
        print(f"  (set-up of {TREES[kind]}: {time.perf_counter() - started:.0f} s)", flush=True)
        local = f"{proj / 'data'}/"

        def three(op, dk_run, aws_run, s5_run=None):
            def settled(run):
                runner.settle()  # each tool starts on an idle machine (see Runner.settle)
                return run()

            dk_time = settled(dk_run)
            peak = runner.last_peak_kib / 1024
            measured[(kind, op)] = (dk_time, peak, settled(aws_run), settled(s5_run) if s5_run else None)

        three("no-op push", lambda: runner.datakit(proj, "push", "only-show-errors"),
              lambda: runner.aws_sync(local, url), lambda: runner.s5cmd_sync(local, url))
        three("status", lambda: runner.datakit(proj, "status"), lambda: runner.aws_sync(local, url, "--dryrun"))
        edit_files(proj / "data", EDITED, "scale-dk")
        dk_push = runner.datakit(proj, "push", "only-show-errors")
        dk_peak = runner.last_peak_kib / 1024
        edit_files(proj / "data", EDITED, "scale-aws")
        aws_push = runner.aws_sync(local, url)
        edit_files(proj / "data", EDITED, "scale-s5cmd")
        s5_push = runner.s5cmd_sync(local, url)
        measured[(kind, f"push, {EDITED} edited")] = (dk_push, dk_peak, aws_push, s5_push)
        three(f"pull, {EDITED} edited", lambda: runner.datakit(clone, "pull", "only-show-errors"),
              lambda: runner.aws_sync(url, f"{theirs['aws']}/"),
              # s5cmd downloads every object newer than the local file (all of them, in a
              # checkout made before the push: 315 s at 100,000 files); by size, only the edits.
              lambda: runner.s5cmd_sync(url + "*", f"{theirs['s5cmd']}/", "--size-only"))
        # A fresh clone's status: every object new to it (no record, no data/).
        fresh = runner.project(f"dk-{kind}-fresh", f"dk/{tag}", None)
        empty = runner.tmp / f"empty-{kind}"
        empty.mkdir()
        three("status (fresh clone)", lambda: runner.datakit(fresh, "status"),
              lambda: runner.aws_sync(url, f"{empty}/", "--dryrun"))
        for folder in (proj, clone, fresh, empty, *theirs.values()):
            shutil.rmtree(folder)
    for op in ("no-op push", "status", f"push, {EDITED} edited", f"pull, {EDITED} edited", "status (fresh clone)"):
        first = measured[(kinds[0], op)][0]
        for kind in kinds:
            dk_time, peak, aws_time, s5_time = measured[(kind, op)]
            grows = f" ({dk_time / first:.1f}x the {TREES[kinds[0]].split(' ')[0]}-file time)" if kind != kinds[0] else ""
            table.add(TREES[kind], op + grows, dk_time, aws_time, peak_mib=peak)
            if s5_time is not None:
                table.add(TREES[kind], op, dk_time, s5_time, "s5cmd", peak_mib=peak)


def bench_first(runner: Runner, table: Table, kind: str) -> None:
    """The first push of a large tree and the first pull of it into a fresh clone,
    datakit beside plain aws s3 sync and s5cmd, one run each (all three pull the
    objects datakit pushed)."""
    print(f"\nFirst push and first pull: {TREES[kind]}, one run each", flush=True)
    tag = f"first-{kind}-{time.monotonic_ns()}"
    # A fresh SeaweedFS makes its first volumes on the first uploads, which made whichever
    # tool ran first here about 5 s slower at 10,000 files: warm it up untimed.
    warm = runner.tmp / "trees" / "first-warm-up"
    make_tree(warm, "small")
    runner.timed([S5CMD, "--endpoint-url", runner.direct, "cp", f"{warm}/*", f"s3://{BUCKET}/warm-up/{tag}/"], runner.tmp)
    shutil.rmtree(warm)
    proj = runner.project(f"first-{kind}", f"dk/{tag}", None)
    make_tree(proj / "data", kind)
    local = f"{proj / 'data'}/"
    waited = []

    def settled(run):
        # Each tool starts on an idle machine: after 100,000 uploads SeaweedFS compacts
        # its store for a while, which slowed whichever tool came next.
        waited.append(runner.settle())
        return run()

    dk_push = settled(lambda: runner.datakit(proj, "push", "only-show-errors"))
    push_peak = runner.last_peak_kib / 1024
    aws_push = settled(lambda: runner.aws_sync(local, f"s3://{BUCKET}/aws/{tag}/"))
    s5_push = settled(lambda: runner.s5cmd_sync(local, f"s3://{BUCKET}/s5/{tag}/"))
    url = f"s3://{BUCKET}/dk/{tag}/"
    clone = runner.project(f"first-{kind}-clone", f"dk/{tag}", None)
    dk_pull = settled(lambda: runner.datakit(clone, "pull", "only-show-errors"))
    pull_peak = runner.last_peak_kib / 1024
    theirs = {name: runner.tmp / f"first-{name}-{kind}" for name in ("aws", "s5cmd")}
    aws_pull = settled(lambda: runner.aws_sync(url, f"{theirs['aws']}/"))
    s5_pull = settled(lambda: runner.s5cmd_sync(url + "*", f"{theirs['s5cmd']}/"))
    print("  (waited for an idle machine before each: " + ", ".join(f"{w:.0f} s" for w in waited) + ")", flush=True)
    for op, dk_time, aws_time, s5_time, peak in (("first push", dk_push, aws_push, s5_push, push_peak),
                                                 ("first pull (fresh clone)", dk_pull, aws_pull, s5_pull, pull_peak)):
        table.add(TREES[kind], op, dk_time, aws_time, peak_mib=peak)
        table.add(TREES[kind], op, dk_time, s5_time, "s5cmd", peak_mib=peak)
    for folder in (proj, clone, *theirs.values()):
        shutil.rmtree(folder)


def bench_resume(runner: Runner, proxy, mib: int) -> None:
    """A big upload stopped half-way (SIGINT, then SIGKILL), pushed again: the bytes each
    push sent through the proxy, and whether S3 ends with exactly the file's bytes."""
    import hashlib
    import signal as signals

    source = runner.tmp / "resume-src"
    source.mkdir(exist_ok=True)
    big = source / "big.bin"
    digest = hashlib.md5(usedforsecurity=False)
    with open(big, "wb") as fh:
        for _ in range(mib):
            block = os.urandom(2**20)
            digest.update(block)
            fh.write(block)
    size = mib * 2**20
    print(f"\nResume: one {mib} MiB file through the proxy, stopped half-way, pushed again", flush=True)
    for stop in ("SIGINT", "SIGKILL"):
        proj = runner.project(f"resume-{stop}", f"resume/{stop}-{time.monotonic_ns()}", source)
        proxy.sent_up = 0
        started = time.perf_counter()
        proc = subprocess.Popen([DATAKIT, "data", "push"], cwd=proj, env=runner.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while proxy.sent_up < size / 2 and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, getattr(signals, stop))
        proc.wait()
        first = proxy.sent_up
        journal = proj / ".datakit-data" / "uploads.jsonl"
        held = 0
        if journal.exists():
            entry = json.loads(journal.read_text().splitlines()[-1])
            parts = runner.client.list_parts(Bucket=BUCKET, Key=entry["key"], UploadId=entry["upload_id"])
            held = sum(part["Size"] for part in parts.get("Parts", []))
        proxy.sent_up = 0
        again = time.perf_counter()
        runner.timed([DATAKIT, "data", "push"], proj)
        second, seconds = proxy.sent_up, time.perf_counter() - again
        obj = runner.client.get_object(Bucket=BUCKET, Key=json.loads(
            (proj / "config" / "datakit-data.json").read_text())["s3_path"] + "/big.bin")
        got = hashlib.md5(usedforsecurity=False)
        for chunk in iter(lambda: obj["Body"].read(2**20), b""):
            got.update(chunk)
        exact = got.hexdigest() == digest.hexdigest()
        print(f"| {mib} MiB, {stop} half-way | first push sent {first / size:.0%} in {again - started:.1f} s, "
              f"S3 held {held / size:.0%} after it | the next sent {second / size:.0%} of the file "
              f"(requests included) in {seconds:.1f} s | object exact: {exact} |", flush=True)
        shutil.rmtree(proj)
    shutil.rmtree(source)


def own_cpu(pid: int) -> float:
    """User + system CPU seconds of one process itself (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_progress(runner: Runner, kind: str, rounds: int = 2) -> None:
    """The first push of a tree with the live line drawn on a terminal (a pseudo-terminal
    as standard error) beside the same push with `no-progress`, alternating."""
    import pty

    source = runner.tmp / "trees" / kind
    make_tree(source, kind)
    times = {"live line on a terminal": [], "no-progress": []}
    cpu = {label: [] for label in times}
    for i in range(rounds):
        for label in (list(times) if i % 2 == 0 else list(times)[::-1]):
            proj = runner.project(f"progress-{i}", f"progress/{kind}-{i}-{label[:4]}-{time.monotonic_ns()}", source)
            words = ["data", "push"] + (["no-progress"] if label == "no-progress" else [])
            runner.settle()
            leader, follower = pty.openpty()
            started = time.perf_counter()
            proc = subprocess.Popen([DATAKIT, *words], cwd=proj, env=runner.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=follower)
            os.close(follower)
            while True:  # drain the terminal, as a terminal would
                try:
                    if not os.read(leader, 65536):
                        break
                except OSError:
                    break
            # Wait without reaping: the exited process's own CPU (its threads, not the AWS CLI
            # it ran) is still in /proc while it is a zombie. Wall time on 2 cores is noisy;
            # the display's cost is CPU in this process.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            times[label].append(time.perf_counter() - started)
            cpu[label].append(own_cpu(proc.pid))
            proc.wait()
            os.close(leader)
            shutil.rmtree(proj)
    on, off = (statistics.median(times[label]) for label in times)
    print(f"\nFirst push of {TREES[kind]}, {rounds} run(s) each: live line {on:.2f} s, no-progress {off:.2f} s "
          f"({on / off - 1:+.1%}); runs: {times}", flush=True)
    on, off = (statistics.median(cpu[label]) for label in cpu)
    print(f"datakit's own CPU (without the AWS CLI), medians: live line {on:.2f} s, no-progress {off:.2f} s "
          f"({on - off:+.2f} s, {(on - off) / statistics.median(times['no-progress']):+.1%} of the run); "
          f"runs: {cpu}", flush=True)
    shutil.rmtree(source)


def bench_lock(runner: Runner, kind: str, rounds: int) -> None:
    """What the lock file (config/datakit-data.lock) costs a no-op push and a push of
    5 edited files: each timed with the lock on and with ``"lock_file": false``,
    alternating, after an untimed run that brings each to its steady state; and how many
    of the lock's lines the 5 edits changed."""
    print(f"\nThe lock file: {TREES[kind]}, {rounds} round(s)", flush=True)
    source = runner.tmp / "trees" / f"lock-{kind}"
    make_tree(source, kind)
    tag = f"lock-{kind}-{time.monotonic_ns()}"
    proj = runner.project(f"lock-{kind}", f"dk/{tag}", None)
    source.rename(proj / "data")
    runner.timed([S5CMD, "--endpoint-url", runner.direct, "--numworkers", "64", "cp",
                  f"{proj / 'data'}/*", f"s3://{BUCKET}/dk/{tag}/"], runner.tmp)
    runner.datakit(proj, "push", "only-show-errors")  # every file identical: recorded, and locked
    lock = proj / "config" / "datakit-data.lock"
    config = json.loads((proj / "config" / "datakit-data.json").read_text())
    times = {(on, op): [] for on in (True, False) for op in ("no-op push", f"push, {EDITED} edited")}
    changed_lines = []
    for i in range(rounds):
        for on in ((True, False) if i % 2 == 0 else (False, True)):
            (proj / "config" / "datakit-data.json").write_text(json.dumps({**config, "lock_file": on}))
            runner.datakit(proj, "push", "only-show-errors")  # steady state
            runner.settle()
            times[(on, "no-op push")].append(runner.datakit(proj, "push", "only-show-errors"))
            before = lock.read_text().splitlines() if on else None
            edit_files(proj / "data", EDITED, f"lock-{i}-{on}")
            runner.settle()
            times[(on, f"push, {EDITED} edited")].append(runner.datakit(proj, "push", "only-show-errors"))
            if on:
                after = lock.read_text().splitlines()
                changed_lines.append(sum(1 for a, b in zip(before, after) if a != b) + abs(len(before) - len(after)))
    for op in ("no-op push", f"push, {EDITED} edited"):
        on, off = statistics.median(times[(True, op)]), statistics.median(times[(False, op)])
        print(f"  {op}: lock on {on:.2f} s, off {off:.2f} s ({on / off - 1:+.1%}); runs: on {times[(True, op)]}, "
              f"off {times[(False, op)]}", flush=True)
    print(f"  the lock: {lock.stat().st_size / 2**20:.1f} MiB; lines changed by each {EDITED}-file push: "
          f"{changed_lines}", flush=True)
    shutil.rmtree(proj)


def bench_partial(runner: Runner, repeat: int, table: Table) -> None:
    """Pulling one 50-file folder of a 10,000-file project beside pulling a 50-file project."""
    print("\nOne folder of a large project beside a small project (fresh clones)", flush=True)
    big, small = runner.tmp / "trees" / "partial-big", runner.tmp / "trees" / "partial-small"
    make_tree(big, "many")
    rng = random.Random(7)
    for i in range(50):
        data = rng.randbytes(1024)
        write(big / "one" / f"f{i:02d}.txt", data)
        write(small / "one" / f"f{i:02d}.txt", data)
    tag = f"partial-{time.monotonic_ns()}"
    for name, tree in (("big", big), ("small", small)):
        runner.timed([S5CMD, "--endpoint-url", runner.direct, "--numworkers", "64", "cp", f"{tree}/*",
                      f"s3://{BUCKET}/dk/{tag}-{name}/"], runner.tmp)
    folder, project, peaks = [], [], []
    for rep in range(repeat):
        clone = runner.project("partial-clone", f"dk/{tag}-big", None)
        folder.append(runner.datakit(clone, "pull", "data/one/", "only-show-errors"))
        peaks.append(runner.last_peak_kib)
        clone = runner.project("partial-small", f"dk/{tag}-small", None)
        project.append(runner.datakit(clone, "pull", "only-show-errors"))
    median_row(table, "10,050 files, 1 KiB", "pull data/one/ (50 files)", folder, project, peaks,
               "pull of a 50-file project")
    shutil.rmtree(big)
    shutil.rmtree(small)


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model or platform.machine()}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    kinds = [k for k in os.environ.get("BENCH_TREES", "small,many,big").split(",") if k]
    scale = os.environ.get("BENCH_SCALE", "")
    scale_kinds = [] if scale in ("", "0") else ["10k", "100k", *(["300k"] if scale == "300k" else [])]
    first = {"": None, "0": None, "1": "100k"}.get(os.environ.get("BENCH_FIRST", ""), os.environ.get("BENCH_FIRST"))
    if first is not None and first not in TREES:
        sys.exit(f"BENCH_FIRST={first}: say 1 (100,000 files) or one of {', '.join(TREES)}")
    started = time.perf_counter()
    print(f"{datetime.date.today()}, {machine()}")
    version = subprocess.run([*AWS, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"AWS CLI: {version}" + (" (BENCH_AWS)" if BENCH_AWS else " (bundled)"))
    help_times = []
    for _ in range(5):
        begun = time.perf_counter()
        subprocess.run([DATAKIT, "data", "push", "--help"], stdout=subprocess.DEVNULL, check=True)
        help_times.append(time.perf_counter() - begun)
    print(f"`datakit data push --help`: median {statistics.median(help_times):.3f} s over 5 runs")
    table = Table()
    with tempfile.TemporaryDirectory(prefix="datakit-data-bench-") as tmp:
        tmp = Path(tmp)
        with S3Server(tmp / "s3", BUCKET) as server:
            proxy = FaultProxy(server.ports["s3.port"], delay=ONE_WAY_DELAY).start()
            try:
                runner = Runner(tmp, f"http://127.0.0.1:{proxy.port}", f"http://127.0.0.1:{server.ports['s3.port']}")
                for kind in kinds:
                    # The 10,000-file and 1 GiB trees take minutes per run: one run each.
                    bench_tree(runner, kind, repeat if kind == "small" else 1, table)
                if os.environ.get("BENCH_PARTIAL", "1") != "0":
                    bench_partial(runner, repeat, table)
                if os.environ.get("BENCH_CONCURRENCY", "1") != "0":
                    bench_concurrency(runner, repeat, table)
                if scale_kinds:
                    bench_scale(runner, table, scale_kinds)
                if first:
                    bench_first(runner, table, first)
                if os.environ.get("BENCH_PROGRESS", "0") not in ("", "0"):
                    bench_progress(runner, os.environ.get("BENCH_PROGRESS_TREE", "10k"),
                                   int(os.environ.get("BENCH_PROGRESS_ROUNDS", "4")))
                if os.environ.get("BENCH_LOCK", "0") not in ("", "0"):
                    bench_lock(runner, os.environ.get("BENCH_LOCK_TREE", "100k"),
                               int(os.environ.get("BENCH_LOCK_ROUNDS", "3")))
                if os.environ.get("BENCH_RESUME", "0") not in ("", "0"):
                    runner.client = isolated_client(runner.direct, "bench", "bench-secret")
                    bench_resume(runner, proxy, int(os.environ.get("BENCH_RESUME_MIB", "1024")))
            finally:
                proxy.stop()
    print("\n| tree | operation | datakit-data | reference | ratio | datakit peak memory |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in table.rows:
        print(Table.format(row))
    print(f"\nWhole benchmark: {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
