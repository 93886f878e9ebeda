"""progress.py and what a run shows: the live line on a terminal, plain lines in a pipe,
one line per file for small runs, and every file's line in the transfer log."""
import os
import pty
import re
import select
import subprocess
import time

from datakit_data.progress import Progress

from helpers import DATAKIT, ok


def _run_in_a_terminal(project, *words: str, timeout: float = 120) -> tuple[int, str]:
    """Run datakit with a pseudo-terminal as its standard error (stdout a pipe)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([DATAKIT, *words], cwd=project.root, env=project.home.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=30), seen.decode(errors="replace") + out


def test_a_terminal_gets_one_live_line_with_the_runs_totals(project, bucket):
    project.configure()
    for i in range(300):
        project.write(f"raw/{i:03}.csv", f"{i}\n" * 10)

    code, shown = _run_in_a_terminal(project, "data", "push")

    assert code == 0, shown
    assert "upload: data/" not in shown  # 300 files: no line per file on the screen
    assert "Push: scanning data/ and listing s3://" in shown
    drawn = re.findall(r"Push: (\d+)/(\d+) files, ([^,]+)/([^,]+),", shown)
    assert drawn and drawn[-1][:2] == ("300", "300"), drawn[-3:]
    total = sum(len(f"{i}\n" * 10) for i in range(300))
    assert drawn[-1][3] == f"{total / 1024:.1f} KiB" and drawn[-1][2] == drawn[-1][3]
    assert "\x1b[K" in shown and "\r" in shown
    assert "Push: 300 file(s) sent" in shown and "Every file's line: .datakit-data/logs/" in shown
    assert len(bucket.objects(project.name)) == 300


def test_a_pipe_gets_no_carriage_returns_and_a_few_lines_and_the_log_every_file(project, colleague):
    project.configure()
    colleague.configure(s3_path=project.name)
    for i in range(2000):
        project.write(f"d{i % 20}/{i:04}.csv", f"{i}\n")

    pushed = ok(project.run("data", "push", timeout=300))
    pulled = ok(colleague.run("data", "pull", timeout=300))

    for result in (pushed, pulled):
        text = result.stdout + result.stderr
        assert "\r" not in text and "\x1b" not in text
        assert len(text.splitlines()) < 20, text
    assert "Push: 2000 file(s) sent" in pushed.stdout
    named = re.search(r"Every file's line: (\S+)", pushed.stdout).group(1)
    lines = (project.root / named).read_text().splitlines()
    assert lines[1] == "# what\tfile\tbytes\tresult"
    assert len(lines) == 2002 and "upload\tdata/d0/0000.csv\t2\tdone" in lines
    pulled_log = re.search(r"Every file's line: (\S+)", pulled.stdout).group(1)
    assert "download\tdata/d19/1999.csv\t5\tdone" in (colleague.root / pulled_log).read_text()
    assert colleague.files() == project.files()


def test_a_small_run_names_each_file_and_keeps_a_log_of_the_last_runs(project):
    project.configure()
    for i in range(7):
        project.write(f"f{i}.csv", f"v{i}\n")
        result = ok(project.run("data", "push"))
        assert f"upload: data/f{i}.csv to s3://" in result.stdout
        assert "Every file's line" not in result.stdout
    logs = sorted((project.root / ".datakit-data" / "logs").iterdir())
    assert len(logs) == 5  # the newest runs' logs
    assert "upload\tdata/f6.csv\t3\tdone" in logs[-1].read_text()


def test_quiet_shows_no_progress_and_no_file_lines(project):
    project.configure()
    for i in range(3):
        project.write(f"f{i}.csv", "x\n")

    result = ok(project.run("data", "push", "quiet"))

    assert "upload:" not in result.stdout and "Push: " not in result.stderr
    assert "Every file's line" not in result.stdout


def test_the_line_says_files_bytes_rate_time_left_and_the_big_file_in_flight():
    sizes = {"small.csv": 1000, "big.bin": 300 * 1000 * 1000}
    shown = Progress("push", sizes, "p/", line=str, tty=True, part_size=lambda size: 8 * 1024 * 1024)
    shown.started -= 10  # ten seconds in
    shown.feed({"event": "done", "key": "p/small.csv"})
    for part in range(3):
        shown.feed({"event": "bytes", "key": "p/big.bin", "bytes": 8 * 1024 * 1024, "part": part + 1})
    shown.feed({"event": "failed", "key": "p/elsewhere.csv"})  # not this run's: nothing
    line = shown.line()
    assert line.startswith("Push: 1/2 files, 24.0 MiB/286.1 MiB, 2.4 MiB/s, ")
    assert "left" in line and "failed" not in line
    assert line.endswith("; data/big.bin: part 3/36")
    shown.feed({"event": "refused", "key": "p/big.bin"})
    assert shown.line().startswith("Push: 2/2 files") and "1 failed" in shown.line()
