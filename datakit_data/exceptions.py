"""The errors datakit-data reports to a user.

Every message says what went wrong and what to do next, in one line. cliff prints
the message of any exception raised by a command (a traceback only with --debug);
``exit_code`` lets an error ask for a code other than cliff's 1.
"""


class DatakitDataError(Exception):
    """Base class: a problem the user can fix, reported in one line."""

    exit_code = 1


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
    """The user pressed Ctrl-C during a transfer."""

    exit_code = 130
