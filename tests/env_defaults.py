"""Environment defaults for the test run, set before pytest-django loads kb.settings.

Loaded as a plugin (`-p tests.env_defaults` in pyproject's addopts) because settings are
imported before any conftest. Worker processes the tests start inherit os.environ, so they
run with the same settings. A variable already set in the environment wins.
"""

import os

# The site is secure by default (DEBUG off, HTTPS only); the tests exercise the development
# configuration over plain HTTP, as `make run` does, and turn production settings on where
# a test is about them.
os.environ.setdefault("DEBUG", "1")
