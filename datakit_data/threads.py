"""Work beside the run's main thread, in daemon threads.

Daemon threads, so that Ctrl-C or SIGTERM ends the process at once: a request
waiting on a server that hangs would otherwise hold its exit for the whole read
timeout, attempt after attempt (about 45 s). The main thread waits for them in
slices, so that Ctrl-C reaches it between them.
"""
import threading
from typing import Callable


def _join(thread: threading.Thread, wait: float | None = None) -> None:
    """Wait for thread (at most ``wait`` seconds), in slices: Ctrl-C reaches the main
    thread between them."""
    slices = None if wait is None else max(1, int(wait / 0.2))
    while thread.is_alive() and (slices is None or slices > 0):
        thread.join(0.2)
        slices = None if slices is None else slices - 1


class Beside:
    """A call run in a daemon thread while the caller goes on."""

    def __init__(self, call: Callable, *args: object, **kwargs: object):
        self._outcome: tuple = ()
        self._thread = threading.Thread(target=self._run, args=(call, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, call: Callable, args: tuple, kwargs: dict) -> None:
        try:
            self._outcome = (True, call(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001  raised again in the caller's thread
            self._outcome = (False, err)

    def result(self) -> object:
        """What the call returned, once it has; or what it raised, raised here."""
        _join(self._thread)
        done, value = self._outcome
        if not done:
            raise value
        return value

    def answer(self, wait: float = 5) -> object:
        """For a side question: what the call returned, or None when it failed or takes
        longer than ``wait`` seconds more (the run itself says why, if it matters)."""
        _join(self._thread, wait)
        done, value = self._outcome or (False, None)
        return value if done else None


def in_daemon_threads(work: Callable[[str], None], paths: list[str], count: int, stop: threading.Event) -> None:
    """work(path) for every path, ``count`` at a time, raising the first failure."""
    pending = iter(paths)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set():
            with lock:
                path = next(pending, None)
            if path is None:
                return
            try:
                work(path)
            except BaseException as err:  # noqa: BLE001  handed to the main thread
                failures.append(err)
                stop.set()
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(count, len(paths))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        _join(thread)
    if failures:
        raise failures[0]
