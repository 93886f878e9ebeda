"""The AWS CLI invocations: built by pure functions, run in one place.

Transfers run `aws s3 sync` (push and pull) as a child process with an
argument list (never a shell). By default it is the awscli installed beside this plugin
(``sys.executable -m awscli``), so it works when only `datakit` is on PATH;
``DATAKIT_DATA_AWS`` names another executable, e.g. an AWS CLI v2 `aws`.
"""
import codecs
import contextlib
import fnmatch
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, Iterator, Mapping, Sequence, TextIO

from . import conditions, names
from .exceptions import ConfigError, Interrupted, Stop, SyncError
from .failures import explain_failure, withheld
from .masking import mask_secrets, without_credentials
from .names import printable
from .plan import Remote
from .settings import CONNECT_TIMEOUT, READ_TIMEOUT, RETRY_ENV, Settings

AWS_ENV = "DATAKIT_DATA_AWS"
LOCAL_DATA = "data/"

#: The awscli installed beside the plugin, run with the same Python.
BUNDLED_AWS = [sys.executable, "-m", "awscli"]


def carries_conditions(aws: Sequence[str]) -> bool:
    """Can this AWS CLI send a push's conditional writes? Only the bundled one runs in
    our launcher, where botocore's events can add them (see conditions.py)."""
    return list(aws) == BUNDLED_AWS


def aws_command(environ: Mapping[str, str] | None = None) -> list[str]:
    """The command that starts the AWS CLI."""
    environ = os.environ if environ is None else environ
    custom = environ.get(AWS_ENV, "").strip()
    if not custom:
        return list(BUNDLED_AWS)
    if os.path.isfile(custom):  # a path with spaces, e.g. C:\Program Files\Amazon\...\aws.exe
        return [custom]
    return shlex.split(custom, posix=os.name == "posix")


def child_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The AWS CLI's environment: the user's, plus a bounded retry policy."""
    environ = dict(os.environ if environ is None else environ)
    if not any(key in environ for key in RETRY_ENV):
        environ.update(RETRY_ENV)
    return environ


def connection_options(settings: Settings) -> list[str]:
    """--profile and --endpoint-url when the config asks for them, and a connect timeout."""
    options = ["--cli-connect-timeout", str(CONNECT_TIMEOUT), "--cli-read-timeout", str(READ_TIMEOUT)]
    if settings.profile:
        options += ["--profile", settings.profile]
    if settings.endpoint_url:
        options += ["--endpoint-url", without_credentials(settings.endpoint_url)]
    return options


def upload_args(settings: Settings, options: Sequence[str], root: str = "") -> list[str]:
    """The AWS CLI's arguments for `aws s3 sync data/ s3://bucket/path/`: upload a staged
    data/ folder (or its folder root)."""
    return ["s3", "sync", LOCAL_DATA + root, settings.s3_url + root, *options, *connection_options(settings)]


def download_args(settings: Settings, options: Sequence[str], root: str = "") -> list[str]:
    """The AWS CLI's arguments for `aws s3 sync s3://bucket/path/ data/`: download into a
    staged data/ folder (or its folder root)."""
    return ["s3", "sync", settings.s3_url + root, LOCAL_DATA + root, *options, *connection_options(settings)]


#: Bytes of ``--exclude`` patterns one command line can carry (Linux allows 2 MiB
#: for arguments and environment together).
MAX_EXCLUDE_BYTES = 1024 * 1024
#: Include patterns beyond which a pull stands skipped objects in by placeholders.
#: The AWS CLI tests every object against every pattern (about 2 us each), while a
#: placeholder costs about 40 us per object it stands in for (made, listed, compared).
MAX_INCLUDES = 20


def _pattern(path: str) -> str:
    """An fnmatch pattern under s3_path matching this path only."""
    # [*] [?] [[] match themselves; a leading [/] keeps the AWS CLI from reading the
    # pattern as an absolute path.
    pattern = "".join(f"[{c}]" if c in "*?[" else c for c in path)
    return "[/]" + pattern[1:] if pattern.startswith("/") else pattern


#: Patterns that each leave out a whole family of keys that can never be files here
#: (names.key_problem refuses every key they match, so no wanted key matches one):
#: the AWS CLI tests every object against every pattern, so 1,000 refused keys as
#: 1,000 patterns cost 10,000 objects 50 s; as a few families, a second.
REFUSED_FAMILIES = (
    # A backslash (not on Windows, where the AWS CLI reads it as the folder separator).
    *(("*[\\]*",) if os.sep == "/" else ()),
    "*[" + "".join(sorted(names.CONTROL_CHARACTERS - {"\x00", "]", "^", "!", "-", "\\"})) + "]*",
    "*//*", "[/]*", "*/",  # an empty folder name, an absolute path, a name ending in /
    "./*", "*/./*", "*/.", "../*", "*/../*", "*/..", ".", "..",
)


def exclude_options(paths: Iterable[str]) -> list[str]:
    """``--exclude`` options that leave out these paths under s3_path: a family
    pattern for keys of a refused kind, each other path by itself."""
    paths = sorted(paths)
    families = [re.compile(fnmatch.translate(f)) for f in REFUSED_FAMILIES]
    used = set()
    alone = []
    for path in paths:
        hit = next((i for i, family in enumerate(families) if family.match(path)), None)
        if hit is None:
            alone.append(path)
        else:
            used.add(hit)
    options = []
    for i in sorted(used):
        options += ["--exclude", REFUSED_FAMILIES[i]]
    paths = alone
    if sum(len(p.encode("utf-8", "surrogateescape")) + 16 for p in paths) > MAX_EXCLUDE_BYTES:
        raise SyncError(
            f"{len(paths)} objects have keys that cannot be files here, e.g. "
            f"{printable(paths[0])}: too many to leave out safely. Rename or remove them on S3."
        )
    for path in paths:
        options += ["--exclude", _pattern(path)]
    return options


@dataclass(frozen=True)
class PullScope:
    """How one `aws s3 sync` downloads exactly the planned objects and no other."""

    options: list[str]  # filter options for the AWS CLI
    placeholders: list[str]  # paths to stand in for with a placeholder of the object's size
    clashes: list[str] = field(default_factory=list)  # wanted, but no pattern can tell them apart


def pull_scope(wanted: Collection[str], present: Iterable[str], refused: Iterable[str],
               fold: Callable[[str], str] = os.path.normcase) -> PullScope:
    """Restrict a pull to ``wanted`` among every object under s3_path (``present``, and
    the ``refused`` keys that can never be files here).

    A folder whose objects are all wanted is one pattern ("raw/*"), any other wanted
    object its own. Up to MAX_INCLUDES patterns, the AWS CLI is told `--exclude "*"`
    and to include those: nothing else is touched, whatever its size. Beyond that (a
    large plan spread over folders), every object not wanted is stood in for by a
    placeholder of its size and an older time, which sync leaves alone, and refused
    keys are excluded by name.

    The AWS CLI matches patterns through ``fold`` (os.path.normcase: on Windows it
    ignores case and reads / and \\ as one). A wanted object whose folded name is
    that of an object that must not be downloaded is a clash: it is left out too.
    """
    present = list(present)
    refused = sorted(refused)
    wanted = set(wanted)
    folding = fold("A/") != "A/"

    def folded(path: str) -> str:
        return fold(path).replace("\\", "/") if folding else path

    unwanted = {folded(p) for p in (*present, *refused) if p not in wanted}
    clashes = sorted(p for p in wanted if folded(p) in unwanted) if folding else []
    wanted.difference_update(clashes)
    unwanted.update(folded(p) for p in clashes)
    # Folders holding (at any depth) an object that must not be downloaded; "" is s3_path.
    mixed = set()
    for folder in {p.rpartition("/")[0] for p in unwanted}:
        while folder not in mixed:
            mixed.add(folder)
            if not folder:
                break
            folder = folder.rpartition("/")[0]
    if "" not in mixed:
        return PullScope([], [])  # everything is wanted
    patterns = set()
    for path in wanted:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folded(folder) not in mixed:
                patterns.add(_pattern(folder) + "/*")
                break
        else:
            patterns.add(_pattern(path))
        if len(patterns) > MAX_INCLUDES:
            return PullScope(exclude_options(refused), [p for p in present if p not in wanted], clashes)
    options = ["--exclude", "*"]
    for pattern in sorted(patterns):
        options += ["--include", pattern]
    return PullScope(options, [], clashes)


def plain_root(root: str) -> str:
    """The folder (of root, or above it) that an `aws s3 sync` may run from: the AWS CLI
    joins its filter patterns onto that folder unescaped, so a folder name holding
    * ? or [ would turn every pattern into a wildcard ("raw[1]/" matches "raw1/")."""
    plain = []
    for part in root.split("/")[:-1]:
        if any(c in part for c in "*?["):
            break
        plain.append(part + "/")
    return "".join(plain)


def under_folder(options: Sequence[str], inner: str) -> list[str]:
    """Filter options written for the folder ``inner`` (below the one the AWS CLI runs
    from), for that folder: each pattern is prefixed with it, escaped, and nothing
    outside it is downloaded."""
    if not inner:
        return list(options)
    prefix = _pattern(inner)
    moved = []
    for i in range(0, len(options), 2):
        flag, pattern = options[i], options[i + 1]
        if (flag, pattern) == ("--exclude", "*"):
            continue
        moved += [flag, prefix + pattern.removeprefix("[/]").lstrip("/")]
    return ["--exclude", "*", "--include", prefix + "*", *moved] if "--include" not in moved \
        else ["--exclude", "*", *moved]


def describe(args: Sequence[str]) -> str:
    """The AWS CLI command line of these arguments as a user could type it, with no
    secret and no control character."""
    return printable(mask_secrets(shlex.join(["aws", *args])))


#: Started first, this imports awscli while datakit reads its settings; then it
#: reads one line (its folder and environment: the AWS config to use), makes the
#: CLI's session and loads the S3 model while datakit plans, and runs the arguments
#: of the second line exactly as `python -m awscli ARGS` would, with the conditions
#: of a push's uploads when the line carries them (see conditions.py). An empty line
#: ends it. datakit keeps its stdin open until the run ends: if datakit dies (killed
#: outright, where prctl is missing), the system closes it and the CLI ends at once.
_LAUNCHER = """\
import gc, json, os, sys, threading
sys.path[:] = [p for p in sys.path if p]  # nothing is imported from the folder it runs in
def watch():
    sys.stdin.read()  # returns when datakit has closed our stdin, or has died
    os._exit(137)
try:
    import awscli.clidriver
    line = sys.stdin.readline()
    if not line.strip():
        sys.exit(0)
    setup = json.loads(line)
    os.chdir(setup["cwd"])
    os.environ.update(setup["env"])
    driver = awscli.clidriver.create_clidriver()
    if setup.get("concurrency"):  # [value, whether it overrides the user's AWS config]
        def concurrency(session, value=setup["concurrency"][0], force=setup["concurrency"][1], **_):
            try:  # the config as read, once the profile is known; the file is never touched
                profiles = session.full_config["profiles"]
                name = session.get_config_variable("profile") or "default"
                if name not in profiles and name != "default":
                    return  # a missing profile: the command says so itself
                s3 = profiles.setdefault(name, {}).setdefault("s3", {})
            except Exception:
                return  # a config it cannot read: the command says so itself
            if isinstance(s3, dict) and (force or "max_concurrent_requests" not in s3):
                s3["max_concurrent_requests"] = str(value)
        driver.session.register("session-initialized", concurrency)
    try:  # about 0.05 s per client the command makes
        driver.session.get_service_model("s3")
        driver.session.get_component("data_loader").load_service_model("s3", "endpoint-rule-set-1")
    except Exception:
        pass
    line = sys.stdin.readline()
    if not line.strip():
        sys.exit(0)
    threading.Thread(target=watch, daemon=True).start()
    gc.freeze()  # what is loaded so far stays: collections need not walk it
    args = json.loads(line)
    from datakit_data import aws_cli, conditions
    if isinstance(args, dict):  # {"args": [...], "guard": the uploads' conditions, "listing": [...]}
        if args.get("guard") is not None:
            conditions.install(driver.session, args["guard"])
        if args.get("listing") is not None:
            aws_cli.answer_listings(driver.session, args["listing"])
        args = args["args"]
    if "--debug" not in args:
        aws_cli.quiet_logs(driver.session)
    code = driver.main(args)
    gc.freeze()  # the process ends: its last collection would cost about 0.1 s
    sys.exit(code)
except KeyboardInterrupt:
    sys.exit(130)
"""


def listing_entries(settings: Settings, objects: Mapping[str, Remote]) -> list[dict]:
    """What a ListObjectsV2 page says of these objects (paths under s3_path), for
    answer_listings."""
    prefix = settings.key_prefix
    return [{"Key": prefix + path, "Size": obj.size, "ETag": f'"{obj.etag}"', "LastModified": obj.last_modified}
            for path, obj in objects.items()]


class _Answered:
    """The HTTP side of a listing answered in-process: a 200 with no body."""

    status_code = 200
    headers: dict = {}
    content = b""
    raw = None


def quiet_logs(session: object) -> None:
    """Without --debug the AWS CLI sets its logger to DEBUG and that logger's one handler
    to ERROR (session.set_stream_logger): every debug message became a record only to be
    thrown away (the filter's, each pattern on each object: 120,000 records for 5
    patterns and 10,000 objects; the sync's, one or two per file, 7.6 us each). Set the
    logger itself to its handler's level too: the same is shown, and none are made."""
    stream_logger = session.set_stream_logger

    def quiet(logger_name, log_level, *more, **named):
        stream_logger(logger_name, log_level, *more, **named)
        logging.getLogger(logger_name).setLevel(log_level)

    session.set_stream_logger = quiet


def answer_listings(session: object, contents: list[dict]) -> None:
    """Answer the AWS CLI's own ListObjectsV2 requests in its process with these objects
    (one page), instead of asking S3.

    datakit has just listed the folder and planned exactly what moves: an upload's
    sync is told S3 holds nothing (it sends every staged file, each guarded by its
    condition), a download's that S3 holds exactly the planned objects (it downloads
    those and nothing else). At 100,000 objects, that saves the CLI's own listing,
    100 pages one after another with every time parsed.
    """
    def answer(**_: object) -> tuple:
        # A copy each time: the CLI changes the entries it is given.
        page = [dict(entry) for entry in contents]
        return _Answered(), {"Contents": page, "KeyCount": len(page), "IsTruncated": False,
                             "ResponseMetadata": {"HTTPStatusCode": 200}}

    session.register("before-call.s3.ListObjectsV2", answer)


def _die_with_datakit(parent: int) -> Callable[[], None]:
    """A preexec_fn: on Linux the kernel kills the AWS CLI when datakit dies, even by SIGKILL."""
    def arrange() -> None:
        try:
            import ctypes  # in the child only, between fork and exec

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return  # not Linux: the launcher's own watch does it
        if os.getppid() != parent:
            os._exit(137)
    return arrange


def _dies_with_datakit() -> dict:
    """Popen options that end the AWS CLI with datakit (preexec_fn does not exist on Windows)."""
    if os.name != "posix":
        return {}
    return {"preexec_fn": _die_with_datakit(os.getpid())}


class Cli:
    """One AWS CLI run, with its progress live and its failures explained.

    With the awscli installed beside the plugin, the process starts as soon as
    this object is made and loads awscli (about 0.3 s) while datakit plans; its
    folder and environment follow in prepare(), the arguments in run(). Another
    AWS CLI (DATAKIT_DATA_AWS) starts in run().
    """

    def __init__(self) -> None:
        self.aws = aws_command()
        self.cwd: str | None = None
        self.env = child_env()
        self.proc = None
        if self.aws == BUNDLED_AWS:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=self.env,
                **_dies_with_datakit(),
            )

    def prepare(self, cwd: str, env: Mapping[str, str], concurrency: tuple[int, bool] | None = None) -> None:
        """The folder the AWS CLI runs in, the variables added to its environment, and
        the S3 concurrency it uses (awsconfig.concurrency; the bundled one only)."""
        self.cwd = cwd
        self.env = {**self.env, **env}
        self._send({"cwd": cwd, "env": dict(env), "concurrency": concurrency})

    def _send(self, message: object) -> None:
        """One line to the launcher; if it has died, its stderr and exit code say why later."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    @property
    def carries_conditions(self) -> bool:
        return carries_conditions(self.aws)

    @property
    def answers_listings(self) -> bool:
        """Can this AWS CLI be told what its sync's listing holds (see answer_listings)?
        Only the bundled one, in our launcher, as for conditions."""
        return carries_conditions(self.aws)

    def run(self, args: Sequence[str], settings: Settings, direction: str, *,
            guard: "conditions.Guard | None" = None, listing: list[dict] | None = None) -> None:
        """Run the AWS CLI with these arguments (as upload_args / download_args build
        them), the uploads under ``guard``'s conditions when given (the bundled AWS CLI only).

        Uploads that S3 refused under those conditions are not a failure of the run:
        the caller reads them from ``guard`` and names them. ``listing`` (the bundled
        AWS CLI only, see answers_listings): the objects its sync finds on S3, instead
        of listing them itself.
        """
        rest = list(args)
        proc = self.proc
        if proc is not None:
            # Its stdin stays open while it runs: see _LAUNCHER.
            asked = {"guard": guard.message() if guard is not None else None, "listing": listing}
            self._send({"args": rest, **asked} if guard is not None or listing is not None else rest)
            self.proc = None
        else:
            guard = None
            try:
                proc = subprocess.Popen(
                    [*self.aws, *rest], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                    env=self.env, cwd=self.cwd, **_dies_with_datakit(),
                )
            except FileNotFoundError:
                raise cannot_start(self.aws)
        follow(proc, settings, direction, guard)

    def close(self) -> None:
        """Dismiss a prepared process that got no work: it has done nothing yet."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()

    def __enter__(self) -> "Cli":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def follow(proc: subprocess.Popen, settings: Settings, direction: str,
           guard: "conditions.Guard | None" = None) -> None:
    """Wait for an AWS CLI process, passing its output on; raise an explanation on failure.

    Its stdout (progress and one line per file) is passed on as it comes, with
    control characters escaped: a key that appeared on S3 after datakit listed it
    has not been checked. Its stderr is read line by line: warnings are echoed
    (secrets masked) and kept, so that a failure can be explained in one line. With
    a ``guard``, uploads S3 refused under its conditions are named by the caller
    instead: when they are the only failures, the run did what it could.
    """
    pump = threading.Thread(target=_pass_on, args=(proc.stdout.fileno(), sys.stdout), daemon=True)
    pump.start()
    lines = []
    held = []  # (line, (path, S3 error code)) of failed uploads under the guard: are they its refusals?
    try:
        for line in proc.stderr:
            line = printable(mask_secrets(line.rstrip("\n")))
            failed_upload = conditions.refusal_line(line) if guard is not None else None
            if failed_upload is not None:
                held.append((line, failed_upload))
                continue
            lines.append(line)
            if not withheld(line):
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        returncode = proc.wait()
    except KeyboardInterrupt as stop:
        _stop(proc)
        signum = getattr(stop, "signum", signal.SIGINT)
        raise Interrupted(direction, signum)
    finally:
        pump.join(5)
        for stream in (proc.stdin, proc.stderr, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
    if held:
        # Refused under the conditions: named as conflicts (or sent again without the
        # conditions, on a store without them) by the caller. Other failures are shown.
        answers = guard.read()
        others = [line for line, (path, code) in held if not answers.explains(path, code)]
        for line in others:
            sys.stderr.write(line + "\n")
        lines += others
    if returncode == 0:
        return
    failed = [line for line in lines if line.startswith(("upload failed:", "fatal error:", "warning: Skipping"))]
    if held and returncode == 1 and not failed:
        return
    raise explain_failure(returncode, lines, settings, direction)


def _pass_on(fd: int, out: TextIO | None) -> None:
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


@contextlib.contextmanager
def signals_stop_the_run() -> Iterator[None]:
    """SIGTERM and SIGHUP stop a run as Ctrl-C does: the AWS CLI first, then datakit."""
    def stop(signum: int, frame: object) -> None:
        raise Stop(signum)

    # Windows has no SIGHUP.
    stopping = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {sig: signal.signal(sig, stop) for sig in stopping}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(proc: subprocess.Popen) -> None:
    """Let an interrupted AWS CLI stop cleanly, then make sure it is gone, even if
    another signal comes while it stops."""
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, ProcessLookupError, ValueError):  # ValueError: Windows
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def cannot_start(args: Sequence[str]) -> ConfigError:
    """The AWS CLI named by DATAKIT_DATA_AWS cannot be started."""
    return ConfigError(
        f"Cannot start the AWS CLI `{args[0]}`. Install it, or unset {AWS_ENV} "
        "to use the awscli installed with datakit-data."
    )
