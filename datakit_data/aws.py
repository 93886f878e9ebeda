"""The AWS CLI invocations: built by pure functions, run in one place.

Transfers run `aws s3 sync` (push and pull) as a child process with an
argument list (never a shell). By default it is the awscli installed beside this plugin
(``sys.executable -m awscli``), so it works when only `datakit` is on PATH;
``DATAKIT_DATA_AWS`` names another executable, e.g. an AWS CLI v2 `aws`.
"""
import codecs
import contextlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading

from .exceptions import ConfigError, DatakitDataError, Interrupted, SkippedFiles, Stop, SyncError
from .masking import mask_secrets, without_credentials
from .names import printable
from .layout import PROJECT_CONFIG

AWS_ENV = "DATAKIT_DATA_AWS"
LOCAL_DATA = "data/"

_SKIPPED = re.compile(r"^warning: Skipping file (?P<path>.+?)\. (?P<why>[^.]+)\.?\s*$")
_PROFILE_MISSING = re.compile(r"The config profile \((?P<name>.*)\) could not be found")


class _MaskingFormatter(logging.Formatter):
    """Formats as before, then masks credentials: tracebacks included."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record) -> str:
        return mask_secrets(self.inner.format(record))


def mask_logging() -> None:
    """Mask credentials in everything the log handlers write (`--debug` tracebacks too)."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _MaskingFormatter):
            handler.setFormatter(_MaskingFormatter(handler.formatter or logging.Formatter()))


#: The awscli installed beside the plugin, run with the same Python.
BUNDLED_AWS = [sys.executable, "-m", "awscli"]


def aws_command(environ=None) -> list[str]:
    """The command that starts the AWS CLI."""
    environ = os.environ if environ is None else environ
    custom = environ.get(AWS_ENV, "").strip()
    if custom:
        return shlex.split(custom)
    return list(BUNDLED_AWS)


#: Seconds to wait for a TCP connection: an unreachable endpoint fails fast.
CONNECT_TIMEOUT = 5
#: Seconds to wait for the server to answer (or send the next bytes): a server that
#: accepts connections but never answers fails every command in under a minute.
READ_TIMEOUT = 15
#: Attempts in all, the first included, for every request.
ATTEMPTS = 3
#: Retry policy unless the user's environment sets one.
RETRY_ENV = {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": str(ATTEMPTS)}


def child_env(environ=None, overrides=None) -> dict:
    """The AWS CLI's environment: the user's, plus a bounded retry policy."""
    environ = dict(os.environ if environ is None else environ)
    if not any(key in environ for key in RETRY_ENV):
        environ.update(RETRY_ENV)
    environ.update(overrides or {})
    return environ


def connection_options(settings) -> list[str]:
    """--profile and --endpoint-url when the config asks for them, and a connect timeout."""
    options = ["--cli-connect-timeout", str(CONNECT_TIMEOUT), "--cli-read-timeout", str(READ_TIMEOUT)]
    if settings.profile:
        options += ["--profile", settings.profile]
    if settings.endpoint_url:
        options += ["--endpoint-url", without_credentials(settings.endpoint_url)]
    return options


def upload_args(settings, options, aws=None) -> list[str]:
    """`aws s3 sync data/ s3://bucket/path/`: upload a staged data/ folder."""
    aws = aws_command() if aws is None else aws
    return [*aws, "s3", "sync", LOCAL_DATA, settings.s3_url, *options, *connection_options(settings)]


def download_args(settings, options, aws=None) -> list[str]:
    """`aws s3 sync s3://bucket/path/ data/`: download into a staged data/ folder."""
    aws = aws_command() if aws is None else aws
    return [*aws, "s3", "sync", settings.s3_url, LOCAL_DATA, *options, *connection_options(settings)]


#: Bytes of ``--exclude`` patterns one command line can carry (Linux allows 2 MiB
#: for arguments and environment together).
MAX_EXCLUDE_BYTES = 1024 * 1024


def exclude_options(paths) -> list[str]:
    """``--exclude`` for each of these paths under s3_path, matching that path only."""
    paths = sorted(paths)
    if sum(len(p.encode("utf-8", "surrogateescape")) + 16 for p in paths) > MAX_EXCLUDE_BYTES:
        raise SyncError(
            f"{len(paths)} objects have keys that cannot be files here, e.g. "
            f"{printable(paths[0])}: too many to leave out safely. Rename or remove them on S3."
        )
    options = []
    for path in paths:
        # fnmatch patterns: [*] [?] [[] match themselves; a leading [/] keeps the
        # AWS CLI from reading the pattern as an absolute path.
        pattern = "".join(f"[{c}]" if c in "*?[" else c for c in path)
        if pattern.startswith("/"):
            pattern = "[/]" + pattern[1:]
        options += ["--exclude", pattern]
    return options


def describe(args) -> str:
    """The command line as a user could type it, with no secret and no control character."""
    shown = list(args)
    if shown[:len(BUNDLED_AWS)] == BUNDLED_AWS:
        shown[:len(BUNDLED_AWS)] = ["aws"]
    return printable(mask_secrets(shlex.join(shown)))


def _withheld(line: str) -> bool:
    """Lines the one-line explanation replaces rather than repeats."""
    return line.startswith("fatal error:") or bool(_PROFILE_MISSING.search(line))


#: Started early, this loads awscli while datakit plans, then runs the arguments
#: it is sent on stdin exactly as `python -m awscli ARGS` would. It ends itself
#: within a second if datakit is gone (killed outright, where prctl is missing).
_LAUNCHER = """\
import json, os, sys, threading, time
parent = int(sys.argv[1])
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(137)
threading.Thread(target=watch, daemon=True).start()
try:
    from awscli.clidriver import create_clidriver
    driver = create_clidriver()
    line = sys.stdin.readline()
    sys.exit(driver.main(json.loads(line)) if line.strip() else 0)
except KeyboardInterrupt:
    sys.exit(130)
"""


def _die_with_datakit(parent: int):
    """A preexec_fn: on Linux the kernel kills the AWS CLI when datakit dies, even by SIGKILL."""
    def arrange():
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return  # not Linux: the launcher's own watch does it
        if os.getppid() != parent:
            os._exit(137)
    return arrange


class Cli:
    """One AWS CLI run, with its progress live and its failures explained.

    With the awscli installed beside the plugin, the process starts as soon as
    this object is made and loads awscli (about 0.3 s) while datakit plans; the
    arguments follow in run(). Another AWS CLI (DATAKIT_DATA_AWS) starts in run().
    """

    def __init__(self, cwd: str | None = None, env: dict | None = None):
        self.aws = aws_command()
        self.cwd = cwd
        self.env = child_env(overrides=env)
        self.proc = None
        if self.aws == BUNDLED_AWS:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid())], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=self.env, cwd=cwd,
                preexec_fn=_die_with_datakit(os.getpid()),
            )

    def run(self, args: list[str], settings, direction: str) -> None:
        """Run these arguments (as built by upload_args / download_args)."""
        rest = list(args[len(self.aws):])
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.write(json.dumps(rest) + "\n")
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it has died: its stderr and exit code say why
        else:
            try:
                proc = subprocess.Popen(
                    [*self.aws, *rest], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                    env=self.env, cwd=self.cwd, preexec_fn=_die_with_datakit(os.getpid()),
                )
            except FileNotFoundError:
                raise cannot_start(self.aws)
        follow(proc, settings, direction)

    def close(self) -> None:
        """Dismiss a prepared process that got no work: it has done nothing yet."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def follow(proc, settings, direction: str, stderr=None, stdout=None) -> None:
    """Wait for an AWS CLI process, passing its output on; raise an explanation on failure.

    Its stdout (progress and one line per file) is passed on as it comes, with
    control characters escaped: a key that appeared on S3 after datakit listed it
    has not been checked. Its stderr is read line by line: warnings are echoed
    (secrets masked) and kept, so that a failure can be explained in one line.
    """
    stderr = sys.stderr if stderr is None else stderr
    stdout = sys.stdout if stdout is None else stdout
    pump = threading.Thread(target=_pass_on, args=(proc.stdout.fileno(), stdout), daemon=True)
    pump.start()
    lines = []
    try:
        for line in proc.stderr:
            line = printable(mask_secrets(line.rstrip("\n")))
            lines.append(line)
            if not _withheld(line):
                stderr.write(line + "\n")
                stderr.flush()
        returncode = proc.wait()
    except KeyboardInterrupt as stop:
        _stop(proc)
        signum = getattr(stop, "signum", signal.SIGINT)
        raise Interrupted(interrupted_message(direction, signum), signum)
    finally:
        pump.join(5)
        proc.stderr.close()
        proc.stdout.close()
    if returncode != 0:
        raise explain_failure(returncode, lines, settings, direction)


def _pass_on(fd: int, out) -> None:
    """Copy the AWS CLI's stdout to ours as it comes, escaping control characters."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        text = decoder.decode(chunk, final=not chunk)
        if text and out is not None:
            try:
                out.write(printable(mask_secrets(text), keep="\r\n"))
                out.flush()
            except (OSError, ValueError):
                out = None  # stdout is gone (`| head`, a full disk): keep draining the pipe
        if not chunk:
            return


def cannot_start(args) -> ConfigError:
    return ConfigError(
        f"Cannot start the AWS CLI `{args[0]}`. Install it, or unset {AWS_ENV} "
        "to use the awscli installed with datakit-data."
    )


@contextlib.contextmanager
def signals_stop_the_run():
    """SIGTERM and SIGHUP stop a run as Ctrl-C does: the AWS CLI first, then datakit."""
    def stop(signum, frame):
        raise Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(proc) -> None:
    """Let an interrupted AWS CLI stop cleanly, then make sure it is gone, even if
    another signal comes while it stops."""
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def interrupted_message(direction: str, signum: int = signal.SIGINT) -> str:
    """What a user reads after Ctrl-C, SIGTERM or SIGHUP."""
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    return (
        f"{direction.capitalize()} {how}; files already transferred are complete. "
        f"Run `datakit data {direction}` again to finish."
    )


def _where(settings) -> str:
    return mask_secrets(settings.endpoint_url) if settings.endpoint_url else "AWS S3"


def explain_failure(returncode: int, lines, settings, direction: str, code: str | None = None,
                    cli: bool = True) -> DatakitDataError:
    """One line saying why a request failed and what to do.

    ``lines`` is what the AWS CLI printed (or an in-process error's text, with
    ``cli`` False); ``code`` is the S3 error code when the caller has it, else it is
    read from the text. The error's ``reason`` is the part after "failed: ".
    """
    text = "\n".join(lines)
    url = mask_secrets(settings.s3_url)
    verb = {
        "push": f"Upload to {url}",
        "pull": f"Download from {url}",
        "list": f"Listing {url}",
        "delete": f"Deleting from {url}",
    }.get(direction, f"Checking bucket {settings.bucket}")
    if returncode == 130 or returncode < 0:
        return Interrupted(interrupted_message(direction))
    if returncode == 2:
        skipped = [m for m in map(_SKIPPED.match, lines) if m]
        if skipped:
            listed = "; ".join(
                f"{os.path.relpath(m.group('path')) if os.path.isabs(m.group('path')) else m.group('path')}"
                f" ({m.group('why').lower()})"
                for m in skipped
            )  # the lines were made printable as they were read
            return SkippedFiles(
                f"{verb} finished, but {len(skipped)} file(s) were skipped: {listed}. "
                f"Fix or remove them and run `datakit data {direction}` again."
            )
    kind, reason = _diagnose(code or _error_code(text), text, settings)
    if reason is None:
        detail = _last_message(lines)
        if cli:
            reason = (f"the AWS CLI exited with code {returncode}{': ' + detail if detail else ''}. "
                      "Run again with the `debug` flag word for details.")
        else:
            reason = f"{detail or 'no reason given'}. Run `datakit --debug ...` for details."
    err = kind(f"{verb} failed: {reason}")
    err.reason = reason
    return err


def _diagnose(code, text: str, settings) -> tuple[type, str | None]:
    """(error class, reason) for the failures we can explain, else (SyncError, None)."""
    missing = _PROFILE_MISSING.search(text)
    if missing:
        return ConfigError, (
            f'AWS profile "{missing.group("name")}" was not found. Add it to '
            f"~/.aws/credentials or ~/.aws/config (or AWS_SHARED_CREDENTIALS_FILE / "
            f'AWS_CONFIG_FILE), or change "aws_user_profile" in {PROJECT_CONFIG}.'
        )
    where = _where(settings)
    if code == "NoSuchBucket":
        return SyncError, (
            f'bucket "{settings.bucket}" does not exist on {where}. '
            f'Check "s3_bucket" in {PROJECT_CONFIG}, or create the bucket.'
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return SyncError, (
            f'the server refused the credentials of AWS profile "{settings.profile_name}" '
            f"({code}). Check that profile's keys, or set \"aws_user_profile\" in {PROJECT_CONFIG}."
        )
    if code in ("AccessDenied", "AllAccessDisabled", "Forbidden", "403"):
        return SyncError, (
            f'access denied to bucket "{settings.bucket}" for AWS profile '
            f'"{settings.profile_name}". Ask the bucket owner for access, or use another profile.'
        )
    if "Unable to locate credentials" in text:
        return SyncError, (
            "no AWS credentials found. Run `aws configure`, set AWS_ACCESS_KEY_ID and "
            f'AWS_SECRET_ACCESS_KEY, or name a profile in "aws_user_profile" in {PROJECT_CONFIG}.'
        )
    if "Failed to connect to proxy URL" in text:
        return SyncError, (
            f"could not reach {where} through the proxy set in HTTPS_PROXY / HTTP_PROXY. "
            "Check the proxy, or add the S3 host to NO_PROXY."
        )
    if "Read timeout on endpoint URL" in text:
        return SyncError, (
            f"{where} accepted the connection but did not answer within {READ_TIMEOUT} s "
            f"({ATTEMPTS} attempts). Check that it is an S3 server and that it is working, "
            f'or "s3_endpoint_url" in {PROJECT_CONFIG}.'
        )
    if "Could not connect to the endpoint URL" in text or "Connect timeout" in text:
        return SyncError, f'could not connect to {where}. Check your network, or "s3_endpoint_url" in {PROJECT_CONFIG}.'
    return SyncError, None


def _error_code(text: str) -> str | None:
    match = re.search(r"An error occurred \((?P<code>[^)]+)\)", text)
    return match.group("code") if match else None


def _last_message(lines) -> str:
    for line in reversed(lines):
        line = line.strip()
        if line:
            return printable(line.removeprefix("fatal error: "))
    return ""
