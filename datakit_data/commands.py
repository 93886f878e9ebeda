"""The `datakit data` commands: init, push, pull and status.

Each command parses its arguments, loads settings through ConfigMixin, calls one
function that does the work, and reports.
"""
import argparse
import gc
import json
import logging
import os
import signal
import subprocess

from cliff._argparse import SmartHelpFormatter
from cliff.command import Command

from . import claim, compare, lockfile, project, pull, push, safesync, scan, share, versions
from .engine.cli import signals_stop_the_run
from .configs import PLUGIN_SLUG, ConfigMixin, as_typed_here, find_project, working_folder
from .exceptions import ConfigError, DatakitDataError, FlagError, Interrupted
from .flags import ACCEPTED, DASHED, Flags, accepted_list, parse_flags
from .layout import PROJECT_CONFIG, Layout
from .lockfile import LOCK
from .lock import project_lock
from .masking import mask_logging, mask_secrets
from .names import printable
from .report import history_json, history_lines, human_bytes, status_lines
from .selection import Selection, check_path, split_words
from .settings import PROJECT_KEYS, SETTINGS, Settings, merge, normalise_s3_path, read_config, settings_from

log = logging.getLogger(__name__)

#: Path words one command takes (a shell glob can give thousands): each is looked up
#: on its own, in data/ and on S3.
MAX_PATHS = 10_000

#: The one flag word of the commands that only read: every request unsigned.
UNSIGNED_WORDS = ("no-sign-request",)


def _file_problem(err: OSError) -> DatakitDataError:
    """An OS error no step expected, as one line naming the path."""
    where = f" {printable(err.filename)}" if err.filename else ""
    why = (err.strerror or str(err)).lower()
    return DatakitDataError(
        f"Could not use{where}: {why}. Check that it exists, that you may write there and "
        "that the disk has space, then run the command again."
    )


class _Help(SmartHelpFormatter):
    """--help with the description's paragraphs and the examples laid out as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        return "\n\n".join(
            paragraph if "\n" in paragraph
            else super(_Help, self)._fill_text(paragraph, width, indent)
            for paragraph in paragraphs
        )


def _stdout_to_nowhere(stream) -> None:
    """Point standard output at the null device, so that nothing written later (the
    interpreter's last flush included) meets the closed pipe again."""
    nowhere = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(nowhere, stream.fileno())
    finally:
        os.close(nowhere)


class _Command(ConfigMixin, Command):
    """What every `datakit data` command shares: the configs, output, exit codes."""

    #: Lines of examples for --help: (what to type, what it does).
    examples: tuple[tuple[str, str], ...] = ()
    #: More about the command for --help, after its one-line description.
    about = ""

    def get_description(self) -> str:
        first = super().get_description()
        return f"{first}\n\n{self.about}" if self.about else first

    def get_epilog(self) -> str:
        # cliff finds a plugin's name by scanning every installed distribution
        # (importlib.metadata.packages_distributions: 0.15-0.2 s on every run); we know it.
        lines = []
        if self.examples:
            width = max(len(typed) for typed, _ in self.examples) + 2
            lines = ["examples:", *(f"  {typed:<{width}}{what}" for typed, what in self.examples), ""]
        return "\n".join([*lines, f"This command is provided by the {PLUGIN_SLUG} plugin."])

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.formatter_class = _Help
        # argparse prints its usage and exits 2, the code the docs keep for skipped files.
        parser.error = self._parser_error  # type: ignore[method-assign]
        return parser

    def _parser_error(self, message: str) -> None:
        """An argparse complaint as one line that says what to type, exit 1."""
        command = self.cmd_name.removeprefix("data ") if getattr(self, "cmd_name", None) else "COMMAND"
        dashed = message.removeprefix("unrecognized arguments: ").split() \
            if message.startswith("unrecognized arguments: ") else []
        words = list(dict.fromkeys(DASHED.get(word, word.lstrip("-").lower()) for word in dashed))
        if dashed and isinstance(self, _Sync) and all(word in ACCEPTED for word in words):
            raise FlagError(
                f"Flag words go without dashes: write {' '.join(words)}, not "
                f"{' '.join(printable(word) for word in dashed)} (e.g. `datakit data {command} {' '.join(words)}`)."
            )
        raise FlagError(f"{printable(message)}. See `datakit data {command} --help`.")

    def selection(self, path_words: list[str], settings: Settings, resolve: bool = True) -> Selection:
        """The part of data/ a run looks at: the path words (files and folders, several
        at once, as the shell's globs give them) and the exclude patterns; ``resolve``: a
        word without a trailing / names a folder when data/ or S3 has one there (push and
        pull ask under the lock)."""
        chosen = Selection.of([check_path(word) for word in path_words], settings.exclude)
        if len(chosen.paths) > MAX_PATHS:
            raise FlagError(
                f"{len(chosen.paths)} paths were given; at most {MAX_PATHS} at once. "
                "Name their folder instead (e.g. data/raw/)."
            )
        return scan.resolve(self.layout, settings, chosen) if resolve else chosen

    def settings(self, flags: Flags = Flags()) -> Settings:
        found = super().settings(flags)
        if self.here:
            # Run from a subfolder: say which project (on stderr: --json stays JSON).
            self.app.stderr.write(f"Project: {printable(self.project_root)} (run from {printable(self.here)}/)\n")
        return found

    def out(self, message: str) -> None:
        """Tell the user something on stdout, as cliff commands do. A reader that went away
        (`datakit data status | head`) ends the output, never the run: a push or pull goes on
        to the end, and what it would still print goes nowhere."""
        try:
            self.app.stdout.write(message + "\n")
            self.app.stdout.flush()
        except BrokenPipeError:
            _stdout_to_nowhere(self.app.stdout)

    def run(self, parsed_args: argparse.Namespace) -> int:
        # cliff turns every exception into exit code 1; some errors need their own
        # (2 for skipped files, 130 for Ctrl-C), so report those here.
        mask_logging()
        try:
            try:
                return super().run(parsed_args)
            except OSError as err:
                raise _file_problem(err) from err
            finally:
                # A one-shot `datakit data ...` ends after the command: moving what it
                # loaded (botocore's models) out of the collector's sight spares the last
                # collection (about 0.1 s) and frees nothing that matters. In cliff's
                # interactive mode (`datakit` with no arguments) more commands follow, and
                # their garbage must stay collectable: nothing is frozen there.
                if not getattr(self.app, "interactive_mode", False):
                    gc.freeze()
        except DatakitDataError as err:
            if err.exit_code == 1:
                raise
            if getattr(self.app.options, "debug", False):
                log.exception(err)
            else:
                log.error(err)
            return err.exit_code


class Init(_Command):
    """Set up this folder as a project: data/, config/datakit-data.json and .gitignore."""

    examples = (
        ("datakit data init", "a new project here, on the bucket of your global config"),
        ("datakit data init --bucket newsroom-data", "a new project on that bucket"),
        ("datakit data init --existing", "join a project a colleague already pushed (a fresh clone)"),
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.description = (
            "Create data/ and config/datakit-data.json in the current folder, and add "
            "data/ and .datakit-data/ to .gitignore. Values come from the options below, else from the "
            "global config (~/.datakit/plugins/datakit-data/config.json), else from "
            "built-in defaults. An existing project config is never overwritten."
        )
        for setting in SETTINGS:
            if setting.option:
                parser.add_argument(
                    setting.option, dest=setting.name, metavar=setting.name.rsplit("_", 1)[-1].upper(),
                    help=f"{setting.help} ({setting.name})",
                )
        parser.add_argument(
            "--existing", action="store_true",
            help="join an s3_path that already holds data (e.g. another checkout of this project)",
        )
        return parser

    @property
    def project_root(self) -> str:
        return working_folder()  # init makes a project here, never in a folder above

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        here = working_folder()
        above = find_project(os.path.dirname(here)) or find_project(os.path.dirname(os.getcwd()))
        if above and not os.path.exists(self.layout.config):
            raise ConfigError(
                f"{printable(here)} is inside the project in {printable(above)} (it has {PROJECT_CONFIG}): "
                f"a project inside another would sync its files twice. Run datakit from {printable(above)}, "
                "or init the new project in a folder outside it."
            )
        global_config = self.global_config()
        if global_config is None:
            # datakit-core's convention: a plugin writes its global defaults on first use.
            self.write_configs(self.default_configs)
            global_config = {}
        project.initialise(self.layout, global_config, vars(parsed_args), global_path=self.plugin_config_path,
                           say=self.out)


class _Sync(_Command):
    """Shared by push and pull: flag words in, one safe-sync run (see safesync.py) out."""

    direction = ""
    run_class: type[safesync.Run] = safesync.Run

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "flags",
            nargs="*",
            metavar="FLAG|PATH",
            help=(
                "flag words, written without dashes, and paths. Flag words (the boolean options of "
                f"`aws s3 sync`, and datakit's own force): {accepted_list()}. Paths (files and folders "
                f"inside data/, several at once) limit the {self.direction} to them; from a subfolder of "
                "the project they are read from there."
            ),
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        flag_words, path_words = split_words([as_typed_here(w) for w in parsed_args.flags], self.here)
        flags = parse_flags(flag_words, self.direction)
        settings = self.settings(flags)
        if flags.delete and not settings.path:
            raise ConfigError(
                f'Refusing `delete` with an empty "s3_path" in {PROJECT_CONFIG}: it would act on '
                f"the whole bucket {settings.bucket}. Set s3_path to this project's folder."
            )
        chosen = self.selection(path_words, settings, resolve=False)
        try:
            with signals_stop_the_run(), project_lock(self.layout, self.direction):
                self.prepare_data_folder(self.layout)
                selection = scan.resolve(self.layout, settings, chosen)
                extra = {}
                if getattr(parsed_args, "as_of", None) is not None:
                    extra["as_of"] = versions.parse_as_of(parsed_args.as_of, selection.file is not None)
                if getattr(parsed_args, "commit", None) is not None:
                    if "as_of" in extra:
                        raise FlagError("--as-of and --commit each choose the versions to pull: give one of them.")
                    extra["commit"] = commit_lock(self.layout, parsed_args.commit)
                self.run_class(self.layout, settings, flags=flags, selection=selection, say=self.out, **extra).run()
        except KeyboardInterrupt as stop:
            signum = getattr(stop, "signum", signal.SIGINT)
            raise Interrupted(self.direction, signum) from None


def commit_lock(layout: Layout, rev: str) -> pull.Commit:
    """The lock file `pull --commit REV` brings data/ to: git's copy at REV, or the
    working tree's (REV "")."""
    if not rev:
        found = lockfile.read(lockfile.lock_path(layout))
        if found is None:
            raise ConfigError(f"No {LOCK} here: push or pull once to write it, or name a commit (--commit REV).")
        return pull.Commit(found, "the lock in the working tree")
    if rev.startswith("-") or "\0" in rev or len(rev) > 256:
        raise FlagError(f'--commit "{printable(rev)[:80]}" is not a git revision.')
    try:
        named = subprocess.run(["git", "-C", layout.root, "rev-parse", "--verify", "--quiet", "--short",
                                f"{rev}^{{commit}}"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
        if named.returncode != 0:
            raise FlagError(f'--commit: "{printable(rev)[:80]}" is no commit of the git repository here '
                            "(`git log` lists them).")
        name = f"commit {named.stdout.strip()}"
        shown = subprocess.run(["git", "-C", layout.root, "show", f"{named.stdout.strip()}:./{LOCK.replace(os.sep, '/')}"],
                               capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise ConfigError(f"--commit needs git, which could not run: {printable(err.strerror or str(err))}.") from err
    except subprocess.TimeoutExpired as err:
        raise ConfigError("--commit: git did not answer within 60 s.") from err
    if shown.returncode != 0:
        raise ConfigError(f"{name} has no {LOCK}: it was made before the project wrote one, so its data "
                          "cannot be named exactly. `datakit data pull --as-of` with the commit's date comes closest.")
    if len(shown.stdout) > lockfile.MAX_BYTES:
        raise ConfigError(f"The {LOCK} of {name} is over {lockfile.MAX_BYTES // 2**20} MiB: no lock of a project is.")
    try:
        text = shown.stdout.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"The {LOCK} of {name} is not UTF-8 text.") from err
    return pull.Commit(lockfile.parse(text, f"{LOCK} of {name}"), name)


def _path_only(words: list[str], command: str, options: str, example: str, here: str) -> tuple[list[str], Flags]:
    """The path words of a command that takes no flag words but `no-sign-request`."""
    flag_words, path_words = split_words([as_typed_here(w) for w in words], here)
    for word in flag_words:
        if word.strip().lower() not in UNSIGNED_WORDS:
            raise FlagError(
                f'"{printable(word)}" is not a path inside data/. `datakit data {command}` takes '
                f"{options}, the flag word no-sign-request and files or folders inside data/, e.g. {example}."
            )
    return path_words, Flags(UNSIGNED_WORDS if flag_words else ())


class Push(_Sync):
    """Send your changes in data/ to S3, for colleagues to pull."""

    about = (
        "Only what changed since your last push or pull is sent. A file that a colleague changed on S3 "
        "since then is a conflict: it is left as it is on both sides and named (`datakit data status` "
        "shows who pushed it and when). Nothing on S3 is deleted unless you add the word delete."
    )
    examples = (
        ("datakit data push", "send every change in data/"),
        ("datakit data push dryrun", "show what would be sent, send nothing"),
        ("datakit data push data/clean/ data/raw/*.csv", "only these folders and files"),
        ("datakit data push delete", "also delete on S3 what you deleted in data/"),
        ("datakit data push force data/x.csv", "a conflict: make your version the one on S3"),
    )

    direction = "push"
    run_class = push.Push

    def prepare_data_folder(self, layout: Layout) -> None:
        if not os.path.isdir(layout.data):
            raise ConfigError(
                f"No data/ folder in {self.project_root}: there is nothing to push. "
                "Put your files in data/ (`datakit data init` creates it) and push again."
            )


class Pull(_Sync):
    """Bring colleagues' changes on S3 into data/."""

    about = (
        "Only what changed on S3 since your last push or pull is downloaded. A file you changed here "
        "is never replaced without a word: when S3 changed it too, it is a conflict, named and left as "
        "it is. Nothing in data/ is deleted unless you add the word delete."
    )
    examples = (
        ("datakit data pull", "bring every change on S3 into data/"),
        ("datakit data pull dryrun", "show what would come, change nothing"),
        ("datakit data pull data/raw/", "only that folder"),
        ("datakit data pull delete", "also delete in data/ what was deleted on S3"),
        ("datakit data pull force data/x.csv", "a conflict: take S3's version (yours is kept aside)"),
        ("datakit data pull --as-of 2026-11-14", "data/ as it was on S3 at the end of that day"),
        ("datakit data pull --commit v1.2", "data/ exactly as that commit's lock file says"),
    )

    direction = "pull"
    run_class = pull.Pull

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "--as-of", metavar="WHEN",
            help="bring data/ (or the path) to its state on S3 at WHEN, on a bucket that keeps versions: "
                 "a date (2026-11-14: the end of that day), a date and time (2026-11-14T15:30, local time "
                 "unless a zone is given) or, for one file, a version id from `datakit data history`",
        )
        parser.add_argument(
            "--commit", metavar="REV", nargs="?", const="",
            help="bring data/ (or the path) to exactly the versions the lock file of git commit REV names "
                 f"({LOCK}; without REV: the lock in the working tree)",
        )
        return parser

    def prepare_data_folder(self, layout: Layout) -> None:
        os.makedirs(layout.data, exist_ok=True)


class History(_Command):
    """List the versions of a file, or of every file under a folder, on a bucket that keeps them."""

    examples = (
        ("datakit data history data/clean/results.csv", "who pushed each version, and when"),
        ("datakit data pull --as-of VERSION data/clean/results.csv", "bring one of them back"),
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("path", nargs="*", metavar="PATH",
                            help="files or folders inside data/ (e.g. data/raw/x.csv); default: all of data/; "
                                 "no-sign-request: for a public bucket, without credentials")
        parser.add_argument("--json", action="store_true", help="print the versions as JSON, for scripts")
        parser.add_argument("--limit", type=int, default=versions.DEFAULT_LIMIT, metavar="N",
                            help=f"show the newest N versions (default {versions.DEFAULT_LIMIT})")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        path_words, flags = _path_only(parsed_args.path, "history", "--json, --limit N", "data/raw/x.csv", self.here)
        if parsed_args.limit < 1:
            raise FlagError(f"--limit must be 1 or more, not {parsed_args.limit}.")
        settings = self.settings(flags)
        selection = self.selection(path_words, settings)
        found, total = versions.history(settings, selection.root, selection.file, parsed_args.limit,
                                        keep=selection.covers)
        if parsed_args.json:
            self.out(history_json(found, total))
        else:
            for line in history_lines(found, total, settings.s3_url):
                self.out(line)


class Status(_Command):
    """Show what push and pull would do (new, changed, deleted, conflicts), changing nothing."""

    examples = (
        ("datakit data status", "what differs between data/ and S3"),
        ("datakit data status data/raw/", "only that folder"),
        ("datakit data status --all", "every file, not rolled up by folder"),
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--json", action="store_true", help="print the report as JSON, for scripts")
        parser.add_argument("--all", action="store_true",
                            help="list every file, not rolled up by folder beyond a screenful")
        parser.add_argument("path", nargs="*", metavar="PATH",
                            help="files or folders inside data/ to look at (e.g. data/raw/); default: all of data/; "
                                 "no-sign-request: for a public bucket, without credentials")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        path_words, flags = _path_only(parsed_args.path, "status", "--json", "data/raw/", self.here)
        settings = self.settings(flags)
        report = safesync.status(self.layout, settings, self.selection(path_words, settings))
        if parsed_args.json:
            self.out(json.dumps(report, indent=2, sort_keys=True))
        else:
            for line in status_lines(report, every_file=parsed_args.all):
                self.out(line)


class Compare(_Command):
    """Save S3's version of conflicting files beside yours, and show what differs."""

    about = (
        "S3's version of each file named (by default, of every conflict) is saved under "
        ".datakit-data/theirs/data/, which never syncs, and what differs is shown for text files. "
        "Nothing in data/ or on S3 changes. A later `push force` of such a file goes through only "
        "while S3 still holds the version saved here."
    )
    examples = (
        ("datakit data compare", "every conflict"),
        ("datakit data compare data/clean/results.csv", "that file, conflict or not"),
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("path", nargs="*", metavar="PATH",
                            help="files or folders inside data/; default: every conflict")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        path_words, flags = _path_only(parsed_args.path, "compare", "no option", "data/clean/results.csv", self.here)
        settings = self.settings(flags)
        with project_lock(self.layout, "compare"):
            compare.compare(self.layout, settings, self.selection(path_words, settings), self.out)


class Share(_Command):
    """Write download links to files of data/ for people without AWS, with checksums."""

    about = (
        "Each file gets a presigned link, pinned to the version you last pushed or pulled where the "
        "bucket keeps versions. The links go into a folder under .datakit-data/shares/ (index.html, "
        "SHA256SUMS, and download-and-check scripts for macOS/Linux and Windows), never onto the screen. "
        "They last --days (at most 7), or less when your credentials expire sooner: you are told."
    )
    examples = (
        ("datakit data share data/clean/", "every file of that folder, for 7 days"),
        ("datakit data share data/clean/results.csv --days 2", "one file, for 2 days"),
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("path", nargs="+", metavar="PATH", help="files or folders inside data/")
        parser.add_argument("--days", default="7", metavar="N",
                            help="how long the links work, in days (default and maximum 7; 0.5 is 12 hours)")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        days = share.parse_days(parsed_args.days)
        path_words, flags = _path_only(parsed_args.path, "share", "--days N", "data/clean/", self.here)
        settings = self.settings(flags)
        with project_lock(self.layout, "share"):
            share.share(self.layout, settings, self.selection(path_words, settings), days=days, say=self.out)


class Projects(_Command):
    """List the projects in the bucket: name, creator, created, last push, files and bytes."""

    about = (
        "Looks under the global config's s3_bucket and s3_path_prefix (or --prefix) for projects whose "
        "name init claimed (<s3_path>/.datakit/project.json), with each one's files and bytes. What "
        "your credentials may not read is named, and the rest is listed."
    )
    examples = (
        ("datakit data projects", "the projects of your global config's bucket and prefix"),
        ("datakit data projects --prefix desk/2026", "under another prefix"),
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--prefix", metavar="PREFIX", help="the folder in the bucket to look in "
                            "(default: s3_path_prefix of the global config)")
        parser.add_argument("--json", action="store_true", help="print them as JSON, for scripts")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        glob = self.global_config() or {}
        inside = read_config(self.layout.config, PROJECT_KEYS, shown=PROJECT_CONFIG) if os.path.exists(
            self.layout.config) else None
        merged = merge(glob, inside or {})
        prefix = parsed_args.prefix if parsed_args.prefix is not None else (glob.get("s3_path_prefix") or "")
        merged["s3_path"] = normalise_s3_path(project.expand(prefix, project.placeholders("")), "--prefix") \
            if prefix.strip("/") else ""
        settings = settings_from(merged, self.plugin_config_path)
        suffix = str(project.expand(glob.get("s3_path_suffix") or "", project.placeholders("")))
        found, unread = claim.projects(settings, suffix)
        if parsed_args.json:
            self.out(json.dumps({"projects": found, "not_read": unread}, indent=2, sort_keys=True))
            return
        if not found:
            self.out(f"No projects under {mask_secrets(settings.s3_url)} (none claimed its name with init).")
        for entry in sorted(found, key=lambda e: e["path"]):
            marker = entry["marker"]
            files = "files: could not be read" if entry["files"] is None else \
                f"{entry['files']:,} file(s), {human_bytes(entry['bytes'])}"
            last = versions.when(entry["last"]) if entry["last"] else "never pushed"
            self.out(f"{printable(marker.get('name', '?'))}  s3://{printable(settings.bucket)}/{printable(entry['path'])}/  "
                     f"created by {printable(marker.get('created_by', '?'))} {printable(marker.get('created', ''))[:10]}  "
                     f"last push {last}  {files}")
        for what in unread:
            self.out(f"not read: {printable(what)}")


class Data(_Command):
    """Keep a project's data/ folder on S3, and share it with colleagues."""

    #: The commands, as `datakit data` lists them.
    COMMANDS = (
        ("init", Init), ("push", Push), ("pull", Pull), ("status", Status), ("compare", Compare),
        ("history", History), ("share", Share), ("projects", Projects),
    )

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("word", nargs="*", help=argparse.SUPPRESS)
        return parser

    def get_epilog(self) -> str:
        width = max(len(name) for name, _ in self.COMMANDS) + 2
        listed = "\n".join(f"  datakit data {name:<{width}}{cls.__doc__.splitlines()[0]}"
                           for name, cls in self.COMMANDS)
        return (f"commands:\n{listed}\n\n`datakit data COMMAND --help` tells more about each, with examples.\n"
                f"This command is provided by the {PLUGIN_SLUG} plugin.")

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        if parsed_args.word:
            names = ", ".join(name for name, _ in self.COMMANDS)
            raise FlagError(f'"{printable(parsed_args.word[0])}" is not a datakit data command. '
                            f"The commands: {names} (`datakit data` lists them).")
        self.out(self.get_description())
        self.out("")
        self.out(self.get_epilog())
