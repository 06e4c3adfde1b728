"""Stressgrid: load testing at the scale of millions of simulated devices."""

__version__ = "0.1.0"
