"""The engine push and pull call: an AWS CLI run with datakit's plugin, and what it reports.

Transfers run `aws s3 sync` as a child process with an argument list (never a
shell). By default it is the awscli installed beside this plugin, in our launcher
(launcher.py; ``Bundled``), so it works when only `datakit` is on PATH;
``DATAKIT_DATA_AWS`` names another executable, e.g. an AWS CLI v2 `aws`
(``Other``), which loads the same plugin from a copy of the user's AWS config.

What an engine can do is one property, ``hooks``: whether datakit's plugin is in
its process, so that its uploads carry their conditions and whole bytes, its
sync's listing is answered with the plan, and it reports events. Push and pull
ask that, never which CLI it is. The bundled CLI always has it; another has it
once a first run of it (``aws --version``, made while datakit plans) says the
plugin loaded: never assumed. Each run's events (plugin.py) are read back with
``read_events``.
"""
import codecs
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence, TextIO

from .. import awsconfig
from ..exceptions import ConfigError, Interrupted, Stop
from ..failures import explain_failure, withheld
from ..files import write_json
from ..masking import mask_secrets
from ..names import printable
from ..settings import RETRY_ENV, Settings
from ..progress import Progress, Tail, clear_active
from . import launcher, plugin

log = logging.getLogger(__name__)

AWS_ENV = "DATAKIT_DATA_AWS"

#: The awscli installed beside the plugin, run with the same Python.
BUNDLED_AWS = [sys.executable, "-m", "awscli"]
#: The name the plugin is imported under in another AWS CLI (its file's name, in our folder).
PLUGIN_MODULE = "datakit_data_engine"
#: Seconds a first run of another AWS CLI may take to say whether it loaded the plugin.
PREFLIGHT_SECONDS = 60


def ours_shown(args: Sequence[str]) -> list[str]:
    """The arguments of a run whose progress and per-file lines datakit shows itself (from
    the plugin's events): the AWS CLI's own are left out, its errors and warnings kept."""
    args = list(args)
    return args if "--quiet" in args or "--only-show-errors" in args else [*args, "--only-show-errors"]


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


@dataclass
class Answers:
    """What a run's events say became of its files and its probes (paths under s3_path)."""

    sent: dict = field(default_factory=dict)  # {path: the ETag S3 answered}
    versions: dict = field(default_factory=dict)  # {path: the VersionId S3 answered, where it keeps versions}
    received: dict = field(default_factory=dict)  # {path: the ETag of the object a download got}
    torn: set = field(default_factory=set)  # downloads whose parts came from different versions
    unguarded: set = field(default_factory=set)  # guarded uploads S3 took under no condition of theirs
    refused: dict = field(default_factory=dict)  # {path: S3 error code}
    unsupported: dict = field(default_factory=dict)  # {path: S3 error code}
    changed: dict = field(default_factory=dict)  # {path: code}: the file changed while it was sent
    failed: dict = field(default_factory=dict)  # {path: S3 error code or HTTP status}
    probes: dict = field(default_factory=dict)  # {kind: (PROVEN, IGNORED or UNSUPPORTED, the code)}
    loaded: str = ""  # the CLI the plugin said it is in ("" when it did not load)
    notes: list = field(default_factory=list)

    def explains(self, path: str, code: str) -> bool:
        """Is this failed upload (its path and S3 error code) one the plugin reported?"""
        return code in (self.refused.get(path), self.unsupported.get(path), self.changed.get(path))

    def merge(self, again: "Answers", paths: Sequence[str]) -> None:
        """Take what became of these paths, sent again without conditions, from ``again``."""
        for path in paths:
            self.unsupported.pop(path, None)
            for mine, theirs in ((self.sent, again.sent), (self.changed, again.changed),
                                 (self.versions, again.versions)):
                if path in theirs:
                    mine[path] = theirs[path]


def read_events(path: str, prefix: str, guarded: Mapping[str, object] = {}, probes: Sequence[str] = ()) -> Answers:
    """The events a run reported so far (a line cut short by a kill is left out).
    ``guarded``: the keys sent under conditions; ``probes``: the kinds probed."""
    found = Answers()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        return found
    for line in lines:
        try:
            entry = json.loads(line)
            event = entry["event"]
        except (ValueError, KeyError, TypeError):
            continue
        if event == plugin.LOADED:
            found.loaded = printable(str(entry.get("cli") or "an AWS CLI"))[:80]
            continue
        if event == plugin.NOTE:
            found.notes.append(printable(str(entry.get("text") or ""))[:300])
            continue
        key = entry.get("key")
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        path, code = key[len(prefix):], str(entry.get("code") or "")
        if event == plugin.PROBE:
            kind, result = entry.get("probe"), entry.get("result")
            if kind in probes and result in (plugin.PROVEN, plugin.IGNORED, plugin.UNSUPPORTED):
                found.probes.setdefault(kind, (result, code))
        elif event == plugin.DONE:
            found.sent[path] = str(entry.get("etag") or "")
            if key in guarded and not entry.get("condition"):
                found.unguarded.add(path)
            if entry.get("version_id"):
                found.versions[path] = str(entry["version_id"])
        elif event == plugin.RECEIVED:
            etag = str(entry.get("etag") or "")
            if found.received.setdefault(path, etag) != etag:
                found.torn.add(path)  # a big file's ranges, some of one version, some of another
            if entry.get("version_id"):
                found.versions[path] = str(entry["version_id"])
        elif event == plugin.CHANGED:
            found.changed[path] = code
        elif event == plugin.FAILED:
            found.failed[path] = code
        elif key not in guarded:
            continue
        elif event == plugin.REFUSED:
            found.refused[path] = code
        elif event == plugin.UNSUPPORTED:
            found.unsupported[path] = code
    return found


class Engine:
    """One AWS CLI run, with datakit's plugin where the CLI takes it, its output
    followed and its failures explained.

    Made first (it may start loading while datakit plans); ``prepare`` gives it its
    folder (the run's staging folder) and environment, ``run`` its arguments.
    """

    def __init__(self, aws: Sequence[str]) -> None:
        self.aws = list(aws)
        self.cwd: str | None = None
        self.env = child_env()
        self.runs = 0
        self.answers = Answers()  # what the last run reported, also when it failed

    @property
    def hooks(self) -> bool:
        """Is datakit's plugin in this CLI (conditions, whole bytes, listing answers, events)?"""
        raise NotImplementedError

    @property
    def without_hooks(self) -> str:
        """Why the plugin is not in this CLI, in the user's words ("" when it is)."""
        return ""

    def prepare(self, cwd: str, env: Mapping[str, str], concurrency: tuple[int, bool] | None = None) -> None:
        """The folder the AWS CLI runs in, the variables added to its environment, and
        the S3 concurrency it uses (awsconfig.concurrency)."""
        self.cwd = cwd
        self.env = {**self.env, **env}
        self.concurrency = concurrency

    def start(self, args: Callable[[], Sequence[str]]) -> None:
        """Start the run with these arguments (asked for only here) now, where the engine
        can: its setup follows in run()."""

    def setup(self, settings: Settings, args: Sequence[str], events: str, *,
              guard: Mapping | None = None, listing: list[dict] | None = None) -> dict:
        """The plugin's setup for one run (see plugin.install)."""
        found = {"events": events, "bucket": settings.bucket, "prefix": settings.key_prefix,
                 "concurrency": getattr(self, "concurrency", None), "quiet": "--debug" not in args}
        if guard is not None:
            found["guard"] = dict(guard)
        if listing is not None:
            found["listing"] = listing
        return found

    def run(self, args: Sequence[str], settings: Settings, direction: str, *, events: str,
            guard: Mapping | None = None, guarded: Mapping[str, object] = {}, probes: Sequence[str] = (),
            listing: list[dict] | None = None, progress: "Progress | None" = None,
            extra: Mapping | None = None) -> Answers:
        """Run the AWS CLI with these arguments (as aws_cli.upload_args / download_args
        build them), and say what became of each file: with hooks, uploads under
        ``guard``'s conditions (see conditions.Guard.message), the sync's listing
        answered with ``listing``, and ``progress`` shown from the events instead of
        the CLI's own output; ``events`` is the file the plugin reports into; ``extra``:
        more of the plugin's setup (a push's journal of unfinished uploads, and those to
        continue).

        Uploads that S3 refused under those conditions are not a failure of the run:
        the caller reads them from the answers and names them.
        """
        if self.hooks:
            args = ours_shown(args)
        else:
            guard = listing = progress = extra = None
        setup = {**self.setup(settings, args, events, guard=guard, listing=listing), **(extra or {})}
        self._events = events
        proc = self._start(list(args), setup)
        self.runs += 1
        events = self._events  # (where the run reports: a run started early has its own file)
        tail = Tail(events, progress) if progress is not None else None

        def answers() -> Answers:
            return read_events(events, settings.key_prefix, guarded, probes)

        torn: set[str] = set()
        try:
            follow(proc, settings, direction, answers if guard is not None else None, torn)
        finally:
            if tail is not None:
                tail.close()
            found = self.answers = answers()
            found.torn.update(torn)
            for note in found.notes:  # with the AWS CLI's own debug log, where it is shown
                log.log(logging.INFO if "--debug" in args else logging.DEBUG, "The AWS CLI: %s", note)
        return found

    def _start(self, args: list[str], setup: dict) -> subprocess.Popen:
        raise NotImplementedError

    def close(self) -> None:
        """Dismiss what this engine started and no run took."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Bundled(Engine):
    """The awscli installed beside datakit, in our launcher (launcher.py): its process
    starts as soon as this object is made and loads awscli (about 0.3 s) while datakit
    plans; its folder and environment follow in prepare(), the arguments in run()."""

    hooks = True

    def __init__(self) -> None:
        super().__init__(BUNDLED_AWS)
        self.proc: subprocess.Popen | None = self._launch()

    def _launch(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", launcher.START], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=self.env,
            **_dies_with_datakit(),
        )

    def prepare(self, cwd: str, env: Mapping[str, str], concurrency: tuple[int, bool] | None = None) -> None:
        super().prepare(cwd, env, concurrency)
        self._send(self.proc, {"cwd": cwd, "env": dict(env)})

    @staticmethod
    def _send(proc: subprocess.Popen, message: object) -> None:
        """One line to the launcher; if it has died, its stderr and exit code say why later."""
        try:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass

    def _start(self, args: list[str], setup: dict) -> subprocess.Popen:
        proc, self.proc = self.proc, None
        if proc is None:  # a second run: a launcher of its own
            proc = self._launch()
            self._send(proc, {"cwd": self.cwd, "env": {k: v for k, v in self.env.items() if os.environ.get(k) != v}})
        # Its stdin stays open while it runs: see launcher.py.
        self._send(proc, {"args": args, "setup": setup})
        return proc

    def close(self) -> None:
        """Dismiss a prepared process that got no work: it has done nothing yet."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


class Other(Engine):
    """Another AWS CLI (DATAKIT_DATA_AWS). It gets the plugin through its own plugin
    mechanism (AWS CLI v2: ``[plugins]`` with ``cli_legacy_plugin_path``), from a copy
    of the user's AWS config in the staging folder that adds our lines and keeps
    everything else; the plugin's file is copied beside it.

    The run starts early (``start``, while datakit plans), with ``--datakit-data-run``,
    an option only the plugin adds: the plugin says it loaded, then waits for the
    rest of its setup on stdin before the command does anything. A CLI without the
    plugin refuses the option at once, having transferred nothing; it then runs with
    the user's own config and no hooks. A run not started early asks first
    (``aws --version`` with the copy). What was found is remembered per CLI, config and
    plugin in ``memory`` (for `status`, which transfers nothing)."""

    def __init__(self, aws: Sequence[str], memory: str | None = None) -> None:
        super().__init__(aws)
        self.memory = memory
        self.plugin_env: dict[str, str] = {}
        self.user_plugin_path: str | None = None
        self.early: subprocess.Popen | None = None  # the run, started early
        self.early_args: list[str] = []
        self.preflight: subprocess.Popen | None = None
        self._hooks: bool | None = None
        self._why = f"DATAKIT_DATA_AWS runs another AWS CLI, {printable(mask_secrets(' '.join(self.aws)))[:200]}"

    def prepare(self, cwd: str, env: Mapping[str, str], concurrency: tuple[int, bool] | None = None) -> None:
        super().prepare(cwd, env, concurrency)
        folder = os.path.join(cwd, "aws-plugin")
        try:
            os.makedirs(folder)
            shutil.copyfile(plugin.__file__, os.path.join(folder, PLUGIN_MODULE + ".py"))
            config, self.user_plugin_path = awsconfig.plugin_config(
                os.path.join(cwd, "aws-config"), folder, PLUGIN_MODULE, self.env)
        except (OSError, ValueError) as err:
            self._hooks = False
            self._why += f", and its AWS config could not be copied with datakit's plugin added ({printable(str(err))[:120]})"
            return
        self.plugin_env = {"AWS_CONFIG_FILE": config}

    def start(self, args: Callable[[], Sequence[str]]) -> None:
        if self._hooks is False or not self.plugin_env:
            return
        setup = os.path.join(self.cwd, "setup-early.json")
        self._write(setup, {"events": self._early_events, "wait": True, "user_plugin_path": self.user_plugin_path})
        args = self.early_args = ours_shown(args())
        try:
            self.early = subprocess.Popen(
                [*self.aws, *args, "--" + plugin.INTERLOCK], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, errors="replace", cwd=self.cwd,
                env={**self.env, **self.plugin_env, plugin.SETUP_ENV: setup}, **_dies_with_datakit())
        except OSError:
            raise cannot_start(self.aws)

    @property
    def _early_events(self) -> str:
        return os.path.join(self.cwd, "events-early.jsonl")

    @staticmethod
    def _write(path: str, setup: dict) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(setup, fh)

    @property
    def hooks(self) -> bool:
        if self._hooks is None:
            self._hooks = self._early_loaded() if self.early is not None else self._asked()
            self._remember(self._hooks)
        return self._hooks

    @property
    def without_hooks(self) -> str:
        return "" if self.hooks else self._why

    def _early_loaded(self) -> bool:
        """Did the run started early say the plugin loaded (and wait for its setup)?"""
        proc, events = self.early, self._early_events
        deadline = time.monotonic() + PREFLIGHT_SECONDS
        while time.monotonic() < deadline:
            found = read_events(events, "")
            if found.loaded:
                log.debug("datakit's plugin is in %s", found.loaded)
                return True
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        self.early = None
        proc.kill()
        _, err = proc.communicate()
        self._not_loaded(proc.returncode, err)
        return False

    def _asked(self) -> bool:
        """Does the CLI load the plugin? Asked with ``aws --version``, unless remembered."""
        if not self.plugin_env:
            return False
        known = self._remembered()
        if known is not None:
            return known
        setup = os.path.join(self.cwd, "preflight.json")
        self._write(setup, {"events": os.path.join(self.cwd, "preflight.jsonl"), "preflight": True,
                            "user_plugin_path": self.user_plugin_path})
        try:
            proc = self.preflight = subprocess.Popen(
                [*self.aws, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, errors="replace", cwd=self.cwd,
                env={**self.env, **self.plugin_env, plugin.SETUP_ENV: setup}, **_dies_with_datakit())
        except OSError:
            raise cannot_start(self.aws)
        try:
            _, err = proc.communicate(timeout=PREFLIGHT_SECONDS)
        except subprocess.TimeoutExpired:
            self._why += ", which did not answer `--version` in time"
            return False
        finally:
            self.close()  # (kills it if it is still running: a timeout, Ctrl-C)
        if proc.returncode == 0 and read_events(os.path.join(self.cwd, "preflight.jsonl"), "").loaded:
            return True
        self._not_loaded(proc.returncode, err)
        return False

    def _not_loaded(self, returncode: int | None, err: str) -> None:
        last = printable(mask_secrets(err.strip().splitlines()[-1]))[:160] if err.strip() else ""
        self._why += (", which did not load datakit's plugin (AWS CLI v2 loads it; "
                      f"{'it said: ' + last if last else 'it gave no reason'})")
        log.debug("The AWS CLI did not load datakit's plugin: exit %s, %s", returncode, last)

    def _signature(self) -> str:
        """What decides whether the plugin loads: the CLI's file, the user's AWS config, the plugin."""
        def stamp(path: str | None) -> list:
            try:
                st = os.stat(path) if path else None
            except OSError:
                st = None
            return [path, st.st_mtime_ns, st.st_size] if st else [path]

        exe = shutil.which(self.aws[0]) or self.aws[0]
        return json.dumps([self.aws, stamp(os.path.realpath(exe)), plugin.VERSION,
                           stamp(os.path.expanduser(awsconfig.user_config_path(self.env)))])

    def _remembered(self) -> bool | None:
        if self.memory is None:
            return None
        try:
            with open(self.memory, encoding="utf-8") as fh:
                entry = json.load(fh).get(self._signature())
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("loaded"), bool):
            return None
        if not entry["loaded"]:
            self._why += f", which did not load datakit's plugin ({printable(str(entry.get('why') or ''))[:160]})"
        return entry["loaded"]

    def _remember(self, loaded: bool) -> None:
        if self.memory is None:
            return
        try:
            os.makedirs(os.path.dirname(self.memory), exist_ok=True)
            write_json(self.memory, {self._signature(): {"loaded": loaded, "why": "" if loaded else self._why}})
        except OSError:
            pass  # asked again next time

    def _start(self, args: list[str], setup: dict) -> subprocess.Popen:
        if self.early is not None:
            proc, self.early = self.early, None
            if self.hooks and list(args) == self.early_args:
                # Its events so far are in the early file: the rest goes there too.
                setup = {**setup, "events": self._early_events}
                try:
                    proc.stdin.write(json.dumps(setup) + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    pass  # it has died: its stderr and exit code say why
                self._events = self._early_events
                return proc
            proc.kill()
            proc.communicate()
        env = dict(self.env)
        if self.hooks:
            path = os.path.join(self.cwd, f"setup-{self.runs}.json")
            self._write(path, {**setup, "user_plugin_path": self.user_plugin_path})
            env.update(self.plugin_env)
            env[plugin.SETUP_ENV] = path
        try:
            return subprocess.Popen(
                [*self.aws, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                env=env, cwd=self.cwd, **_dies_with_datakit(),
            )
        except OSError:
            raise cannot_start(self.aws)

    def close(self) -> None:
        for name in ("early", "preflight"):
            proc = getattr(self, name)
            setattr(self, name, None)
            if proc is not None:
                proc.kill()  # (nothing, if it has ended)
                proc.wait()
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()


def open_engine(environ: Mapping[str, str] | None = None, memory: str | None = None) -> Engine:
    """The engine DATAKIT_DATA_AWS asks for: the bundled AWS CLI unless it names another
    (``memory``: where what was found of another CLI is remembered)."""
    aws = aws_command(environ)
    return Bundled() if aws == BUNDLED_AWS else Other(aws, memory)


def hooks_for_status(folder: str, memory: str | None = None) -> tuple[bool, str]:
    """(whether pushes now run with datakit's plugin, why not) for `status`, which
    runs no transfer: the bundled CLI always does; another is asked, in ``folder``,
    unless ``memory`` knows."""
    aws = aws_command()
    if aws == BUNDLED_AWS:
        return True, ""
    with Other(aws, memory) as engine:
        engine.prepare(folder, {})
        return engine.hooks, engine.without_hooks


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


def follow(proc: subprocess.Popen, settings: Settings, direction: str,
           answers: Callable[[], Answers] | None = None, torn: set | None = None) -> None:
    """Wait for an AWS CLI process, passing its output on; raise an explanation on failure.

    Its stdout (progress and one line per file) is passed on as it comes, with
    control characters escaped: a key that appeared on S3 after datakit listed it
    has not been checked. Its stderr is read line by line: warnings are echoed
    (secrets masked) and kept, so that a failure can be explained in one line. With
    ``answers`` (a run's events, where its uploads carry conditions), uploads S3
    refused under its conditions are named by the caller instead: when they are the
    only failures, the run did what it could. Downloads the AWS CLI gave up because
    the object changed between their parts are added to ``torn``, named by the
    caller, and not a failure of the run either.
    """
    pump = threading.Thread(target=_pass_on, args=(proc.stdout.fileno(), sys.stdout), daemon=True)
    pump.start()
    lines = []
    held = []  # (line, (path, S3 error code)) of failed uploads under the guard: are they its refusals?
    try:
        for line in proc.stderr:
            line = printable(mask_secrets(line.rstrip("\n")))
            failed_upload = refusal_line(line) if answers is not None else None
            if failed_upload is not None:
                held.append((line, failed_upload))
                continue
            changed = _CHANGED_DOWNLOAD.match(line) if torn is not None else None
            if changed is not None:
                torn.add(changed.group("path"))
                continue
            lines.append(line)
            if not withheld(line) and sys.stderr is not None:
                clear_active()
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
        found = answers()
        others = [line for line, (path, code) in held if not found.explains(path, code)]
        for line in others:
            sys.stderr.write(line + "\n")
        lines += others
    if returncode == 0:
        return
    failed = [line for line in lines if line.startswith(("upload failed:", "download failed:", "fatal error:",
                                                         "warning: Skipping"))]
    if (held or torn) and returncode == 1 and not failed:
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


# The first error of the line is the AWS CLI's own; the server's message comes after it.
_FAILED_UPLOAD = re.compile(
    r"^upload failed: data/(?P<path>.+?) to s3://.*? An error occurred \((?P<code>[^)]+)\) when calling the "
    r"(?:PutObject|CompleteMultipartUpload|UploadPart|CreateMultipartUpload) operation")


#: A download the AWS CLI gave up: the object changed between the ranges of a big file.
_CHANGED_DOWNLOAD = re.compile(r"^download failed: s3://.+? to data/(?P<path>.+?) Contents of stored object "
                               r".* did not match expected ETag\.?$")


def refusal_line(line: str) -> tuple[str, str] | None:
    """(path in data/, S3 error code) of an `upload failed:` line of the AWS CLI, else None."""
    match = _FAILED_UPLOAD.match(line)
    return (match.group("path"), match.group("code")) if match else None


def cannot_start(args: Sequence[str]) -> ConfigError:
    """The AWS CLI named by DATAKIT_DATA_AWS cannot be started."""
    return ConfigError(
        f"Cannot start the AWS CLI `{printable(args[0])}`. Install it, or unset {AWS_ENV} "
        "to use the awscli installed with datakit-data."
    )
