"""The errors datakit-data reports to a user.

Every message says what went wrong and what to do next, in one line. cliff prints
the message of any exception raised by a command (a traceback only with --debug);
``exit_code`` lets an error ask for a code other than cliff's 1.
"""


class DatakitDataError(Exception):
    """Base class: a problem the user can fix, reported in one line."""

    exit_code = 1
    #: Why a request failed, without the step it failed in (set by aws.explain_failure).
    reason: str | None = None


class ConfigError(DatakitDataError):
    """A project or global config file is missing, malformed or incomplete."""


class FlagError(DatakitDataError):
    """A pass-through flag word that push or pull does not accept."""


class SyncError(DatakitDataError):
    """The AWS CLI could not finish a push, pull or check."""


class SkippedFiles(SyncError):
    """The AWS CLI transferred what it could but skipped some files."""

    exit_code = 2


class Interrupted(SyncError):
    """Ctrl-C, SIGTERM or SIGHUP stopped a run: exit 128 + the signal's number."""

    exit_code = 130

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.exit_code = 128 + signum


class Stop(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives, as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
