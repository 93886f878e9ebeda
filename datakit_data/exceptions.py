"""The errors datakit-data reports to a user.

Every message says what went wrong and what to do next, in one line, and is
built in one place: the error's constructor, from the facts it is given. cliff
prints the message of any exception raised by a command (a traceback only with
--debug); ``exit_code`` lets an error ask for a code other than cliff's 1.
"""
import signal


class DatakitDataError(Exception):
    """Base class: a problem the user can fix, reported in one line."""

    exit_code = 1

    def __init__(self, message: str, reason: str | None = None, kind: str = ""):
        super().__init__(message)
        #: Why a request failed, without the step it failed in (see failures.py).
        self.reason = reason
        #: What kind of failure failures.py found ("no bucket", "sso", ...), or "".
        self.kind = kind


class ConfigError(DatakitDataError):
    """A project or global config file is missing, malformed or incomplete."""


class FlagError(DatakitDataError):
    """A pass-through flag word that push or pull does not accept."""


class SyncError(DatakitDataError):
    """A push, pull or check could not finish, or left conflicts."""


class SkippedFiles(SyncError):
    """The run transferred what it could but skipped some files: exit 2."""

    exit_code = 2

    #: Skipped files named one by one before "... and N more".
    SHOWN = 20

    def __init__(self, direction: str, skipped: list[str], fix: str = "fix or remove them"):
        self.direction = direction
        self.skipped = list(skipped)
        named = "; ".join(self.skipped[:self.SHOWN])
        if len(self.skipped) > self.SHOWN:
            named += f"; ... and {len(self.skipped) - self.SHOWN} more (`datakit data status` lists them all)"
        super().__init__(
            f"{len(skipped)} file(s) skipped: {named}. The rest went through; "
            f"{fix} and run `datakit data {direction}` again."
        )


class Interrupted(SyncError):
    """Ctrl-C, SIGTERM or SIGHUP stopped a run: exit 128 + the signal's number."""

    def __init__(self, direction: str, signum: int = signal.SIGINT):
        self.direction = direction
        self.signum = signum
        self.exit_code = 128 + signum
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {name}"
        super().__init__(
            f"{direction.capitalize()} {how}; files already transferred are complete. "
            f"Run `datakit data {direction}` again to finish."
        )


class Stop(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives, as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
