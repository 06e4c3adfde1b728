"""The Stressgrid coordinator: generator registry, run scheduler, aggregation, writers and API.

``create_app(config)`` returns the Flask application; ``python -m
coordinator_app`` serves it with waitress.
"""
from .app import create_app
from .config import Config

__all__ = ["Config", "create_app"]
