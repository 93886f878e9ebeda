"""What a transfer shows while it runs, from the plan's totals and the engine's events.

datakit knows before the first byte moves how many files and bytes a run will move;
the engine reports each file as it starts, each part or chunk as it moves and each
file as it ends (engine/plugin.py). ``Progress`` turns those into:

- on a terminal, one live line redrawn a few times a second and cut to the
  terminal's width: files and bytes done of the totals, the rate, the time left,
  the failures, and the big file in flight;
- off a terminal (CI, a log, a pipe), a plain line every ``every`` seconds, no
  carriage returns and no escape codes;
- for a small run, one line per file as it ends (as the AWS CLI prints them); a
  bigger run keeps those for its transfer log (report.py writes it).

It writes to standard error; the summary and the per-file lines go to standard output.
"""
import logging
import os
import shutil
import sys
import threading
import time
from typing import Callable, Mapping, TextIO

from .engine import plugin
from .names import printable
from .report import human_bytes

#: Runs of up to this many files print one line per file; bigger ones keep them for the log.
PER_FILE_LINES = 40
#: A file this big in flight is named on the live line, with its parts.
BIG_FILE = 100 * 1000 * 1000
#: Seconds between redraws of the live line.
REDRAW = 0.25


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """The progress of one transfer (paths under s3_path, with their sizes)."""

    def __init__(self, direction: str, sizes: Mapping[str, int], prefix: str, *, line: Callable[[str], str],
                 err: TextIO | None = None, out: TextIO | None = None, tty: bool | None = None,
                 every: float = 30.0, live: bool = True, per_file: bool | None = None,
                 part_size: Callable[[int], int] = lambda size: size):
        self.direction = direction
        self.verb = "Push" if direction == "push" else "Pull"
        self.sizes = dict(sizes)
        self.prefix = prefix
        self.file_line = line  # the per-file line of a path, as the AWS CLI words it
        self.err = err if err is not None else sys.stderr
        self.out = out if out is not None else sys.stdout
        if self.err is None:  # standard error closed (`2>&-`): nothing to draw on
            live, tty = False, False
        self.tty = _is_tty(self.err) if tty is None else tty
        self.every = every
        self.live = live
        self.per_file = len(self.sizes) <= PER_FILE_LINES if per_file is None else per_file
        self.part_size = part_size
        self.total_files, self.total_bytes = len(self.sizes), sum(self.sizes.values())
        self.files = self.bytes = self.failed = 0
        self.moved: dict[str, int] = {}  # bytes moved of each file in flight
        self.parts: dict[str, int] = {}  # parts sent of each upload in flight
        self.started = time.monotonic()
        self.last_line = self.started
        self.drawn = False
        self.lock = threading.RLock()

    # what happened ------------------------------------------------------------

    def feed(self, event: Mapping) -> None:
        """Take one event of the engine (see plugin.py)."""
        key = event.get("key")
        if not isinstance(key, str) or not key.startswith(self.prefix):
            return
        path = key[len(self.prefix):]
        if path not in self.sizes:
            return
        kind = event.get("event")
        with self.lock:
            if path not in self.moved and kind in (plugin.STARTED, plugin.BYTES, plugin.DONE, plugin.RECEIVED):
                self.moved[path] = 0
            if kind == plugin.RECEIVED and self.sizes[path] == 0:
                self._finish(path, ok=True)  # an empty file: no bytes to count
            if kind == plugin.BYTES:
                count = event.get("bytes")
                self._add(path, count if isinstance(count, int) and not isinstance(count, bool) else 0)
                if self.direction == "push":
                    self.parts[path] = self.parts.get(path, 0) + 1
                elif self.moved.get(path, 0) >= self.sizes[path]:
                    self._finish(path, ok=True)
            elif kind == plugin.DONE and self.direction == "push":
                self._add(path, self.sizes[path] - self.moved.get(path, 0))
                self._finish(path, ok=True)
            elif kind in (plugin.REFUSED, plugin.FAILED, plugin.CHANGED, plugin.UNSUPPORTED):
                self._finish(path, ok=False)

    def _add(self, path: str, count: int) -> None:
        count = max(0, min(count, self.sizes[path] - self.moved.get(path, 0)))
        self.moved[path] = self.moved.get(path, 0) + count
        self.bytes += count

    def _finish(self, path: str, ok: bool) -> None:
        if path not in self.moved:
            return  # said already
        del self.moved[path]
        self.parts.pop(path, None)
        self.files += 1
        if not ok:
            self.failed += 1
        elif self.per_file:
            self._clear()
            self._write(self.out, self.file_line(path) + "\n")

    # what is shown ------------------------------------------------------------

    def line(self, now: float | None = None) -> str:
        """The progress line as it stands."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-6)
        with self.lock:
            files, done, failed = self.files, self.bytes, self.failed
            big = max(((p, m) for p, m in self.moved.items() if self.sizes[p] >= BIG_FILE),
                      key=lambda item: self.sizes[item[0]], default=None)
            parts = self.parts.get(big[0], 0) if big else 0
        text = (f"{self.verb}: {files:,}/{self.total_files:,} files, {human_bytes(done)}/{human_bytes(self.total_bytes)}"
                f", {human_bytes(int(done / elapsed))}/s")
        left = []
        if files and files < self.total_files:
            left.append((self.total_files - files) * elapsed / files)  # many small files: files per second
        if done and done < self.total_bytes:
            left.append((self.total_bytes - done) * elapsed / done)  # big files: bytes per second
        if left and elapsed >= 1:
            text += f", {_duration(max(left))} left"
        if failed:
            text += f", {failed:,} failed"
        if big is not None:
            path, moved = big
            size = self.sizes[path]
            if self.direction == "push":
                total = -(-size // max(1, self.part_size(size)))
                text += f"; data/{printable(path)}: part {parts}/{total}"
            else:
                text += f"; data/{printable(path)}: {human_bytes(moved)}/{human_bytes(size)}"
        return text

    def draw(self, now: float | None = None) -> None:
        """Redraw the live line (a terminal), or say a plain line when one is due (elsewhere)."""
        if not self.live:
            return
        now = time.monotonic() if now is None else now
        if self.tty:
            width = shutil.get_terminal_size((80, 24)).columns
            text = self.line(now)[:max(10, width - 1)]
            with self.lock:  # (not between a clear and the message it makes room for)
                self._write(self.err, "\r" + text + "\x1b[K")
                self.drawn = True
        elif now - self.last_line >= self.every:
            self._write(self.err, self.line(now) + "\n")
            self.last_line = now

    def _clear(self) -> None:
        if self.drawn:
            self._write(self.err, "\r\x1b[K")
            self.drawn = False

    def close(self) -> None:
        """Take the live line away: the summary follows."""
        with self.lock:
            self._clear()

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # the terminal or pipe is gone: the run goes on


def _is_tty(stream) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (OSError, ValueError):
        return False


#: The live lines on screen now (see clear_active).
_ACTIVE: list[Progress] = []


def clear_active() -> None:
    """Take any live line away before something else is written to the terminal."""
    for shown in list(_ACTIVE):
        with shown.lock:
            shown._clear()


class _ClearFirst(logging.Filter):
    """Takes the live line away before a message (a warning, a conflict) is written."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        with self.progress.lock:
            self.progress._clear()
        return True


class Tail:
    """Feed a growing events file to a Progress, and redraw it, in a thread of its own."""

    def __init__(self, path: str, progress: Progress):
        self.path = path
        self.progress = progress
        self.stop = threading.Event()
        self.first = _ClearFirst(progress)
        self.handlers = list(logging.getLogger().handlers)
        for handler in self.handlers:
            handler.addFilter(self.first)
        _ACTIVE.append(progress)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import json

        offset, rest = 0, b""
        while True:
            stopping = self.stop.wait(REDRAW)
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                chunk = b""
            offset += len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()  # a line still being written
            for raw in lines:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.progress.feed(event)
            if stopping:
                if self.progress.tty:
                    self.progress.draw()  # the totals as they ended, before the summary takes the line
                return
            self.progress.draw()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.progress.close()
        for handler in self.handlers:
            handler.removeFilter(self.first)
        if self.progress in _ACTIVE:
            _ACTIVE.remove(self.progress)


def phase(text: str, stream: TextIO | None = None) -> bool:
    """Say on a terminal's live line what a run is doing before its transfer (scanning,
    listing, planning); True when said. Nothing off a terminal."""
    stream = sys.stderr if stream is None else stream
    if not _is_tty(stream):
        return False
    try:
        stream.write("\r" + text[:max(10, shutil.get_terminal_size((80, 24)).columns - 1)] + "\x1b[K")
        stream.flush()
    except (OSError, ValueError):
        return False
    return True


def clear(stream: TextIO | None = None) -> None:
    """Take a phase line away."""
    stream = sys.stderr if stream is None else stream
    if stream is None:
        return
    try:
        stream.write("\r\x1b[K")
        stream.flush()
    except (OSError, ValueError):
        pass


def interval() -> float:
    """Seconds between plain progress lines off a terminal (DATAKIT_DATA_PROGRESS_EVERY, default 30)."""
    try:
        return max(1.0, float(os.environ.get("DATAKIT_DATA_PROGRESS_EVERY", "30")))
    except ValueError:
        return 30.0
