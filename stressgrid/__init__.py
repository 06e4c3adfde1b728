"""Stressgrid: load testing at the scale of millions of simulated devices."""

# Fails at once, in one line saying what to run, when the Cython modules are not compiled.
from . import _core  # noqa: F401

__version__ = "0.1.0"
