"""The config-merging mixin shared by every `datakit data` command.

It sits beside cliff's Command (after datakit-core's CommandHelpers) and gives
every command the global config, the project config and the merged Settings.
It also declares ``config_spec`` so that `datakit config list|set|verify` know
this plugin's settings.
"""
import dataclasses
import functools
import os

from datakit import CommandHelpers, ConfigField
from datakit.config import PluginConfig

from . import s3
from .exceptions import ConfigError
from .flags import Flags
from .layout import PROJECT_CONFIG, Layout
from .masking import mask_secrets, remember
from .settings import (
    GLOBAL_DEFAULTS, GLOBAL_KEYS, PROJECT_KEYS, SETTINGS, Setting, Settings, merge, read_config, settings_from,
)

PLUGIN_SLUG = "datakit-data"


def verify_bucket(bucket: str) -> tuple[bool, str]:
    """`datakit config verify`: does the global s3_bucket answer with the global profile?"""
    path = global_config_path()
    merged = merge(read_config(path, GLOBAL_KEYS) or {}, {"s3_bucket": bucket, "s3_path": ""})
    return s3.check_bucket(settings_from(merged, path))


def working_folder() -> str:
    """The folder the command runs in, as the shell names it ($PWD, links kept) when that
    is where it runs; else its physical path."""
    logical = os.environ.get("PWD", "")
    try:
        if os.path.isabs(logical) and os.path.samefile(logical, "."):
            return os.path.normpath(logical)
    except OSError:
        pass
    return os.getcwd()


def as_typed_here(word: str) -> str:
    """An absolute path word as the same path from the folder the command runs in (what
    a shell's completion of a dragged-in file gives); other words as they are."""
    if not os.path.isabs(word):
        return word
    relative = os.path.relpath(word, working_folder())
    return relative + ("/" if word.endswith(("/", os.sep)) and relative != "." else "")


def find_project(start: str) -> str | None:
    """The nearest folder, from ``start`` up to the file system's root, holding a project
    config; None when there is none."""
    here = os.path.abspath(start)
    while True:
        if os.path.isfile(os.path.join(here, PROJECT_CONFIG)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def global_config_path() -> str:
    """~/.datakit/plugins/datakit-data/config.json, honouring DATAKIT_HOME."""
    return PluginConfig(PLUGIN_SLUG).config_path


class _UrlField(ConfigField):
    """A URL setting: `datakit config list` shows it with any credentials in it masked."""

    def display(self, value: object) -> str | None:
        shown = super().display(value)
        if shown is None:
            return None
        remember(shown)
        return mask_secrets(shown)


def _field(setting: Setting) -> ConfigField:
    """The datakit-core ConfigField of a global setting."""
    kind = _UrlField if setting.name.endswith("_url") else ConfigField
    return kind(
        setting.name, help=setting.help, default=setting.default or None,
        validator=verify_bucket if setting.name == "s3_bucket" else None,
    )


CONFIG_SPEC = [_field(setting) for setting in SETTINGS if setting.in_global]


class ConfigMixin(CommandHelpers):
    """Global config + project config -> Settings, for every datakit-data command."""

    plugin_slug = PLUGIN_SLUG
    config_spec = CONFIG_SPEC

    @property
    def default_configs(self) -> dict:
        return dict(GLOBAL_DEFAULTS)

    @functools.cached_property
    def project_root(self) -> str:
        """The project this command is for: the nearest folder, from here up, that holds
        config/datakit-data.json (as git finds .git); here when there is none. "Here" is
        the folder as the shell names it: in a data/ that links to another disk, its
        physical path leads nowhere near the project."""
        here = working_folder()
        return find_project(here) or find_project(os.getcwd()) or here

    @property
    def here(self) -> str:
        """The folder the command runs in, from the project's folder ("" at its top)."""
        for start in (working_folder(), os.getcwd()):
            relative = os.path.relpath(start, self.project_root)
            if relative == ".":
                return ""
            if not relative.startswith(".."):
                return relative.replace(os.sep, "/")
        return relative.replace(os.sep, "/")

    @property
    def layout(self) -> Layout:
        return Layout(self.project_root)

    def global_config(self) -> dict | None:
        """The global config, or None when the file does not exist.

        Unlike CommandHelpers.configs, a malformed file is reported, never
        replaced by defaults.
        """
        return read_config(self.plugin_config_path, GLOBAL_KEYS)

    def project_config(self) -> dict:
        """The project config; an error pointing at `datakit data init` when missing."""
        config = read_config(self.layout.config, PROJECT_KEYS, shown=PROJECT_CONFIG)
        if config is None:
            raise ConfigError(
                f"No {PROJECT_CONFIG} in {self.project_root} nor in any folder above it: this is not a "
                "datakit-data project. cd to the project's folder, or run `datakit data init` to make this one."
            )
        return config

    def settings(self, flags: Flags = Flags()) -> Settings:
        """Settings for a run: global runtime defaults < project config, and what the
        flag words say of every request (`no-sign-request`)."""
        merged = settings_from(merge(self.global_config() or {}, self.project_config()), PROJECT_CONFIG)
        return dataclasses.replace(merged, unsigned=flags.unsigned)
