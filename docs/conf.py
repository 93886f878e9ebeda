"""Sphinx configuration for the datakit-data docs (`make docs`)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from datakit_data import __version__  # noqa: E402

project = "datakit-data"
author = "datakit-data contributors"
copyright = "2026, datakit-data contributors"
version = release = __version__
extensions = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
