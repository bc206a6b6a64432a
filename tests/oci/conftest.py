"""Fixtures of the registry client tests live in regtools.py (also imported by the tests for its helpers)."""

from regtools import *  # noqa: F401,F403
