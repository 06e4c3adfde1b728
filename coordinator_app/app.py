"""The Flask application factory.

``create_app(config)`` builds the app with three blueprints - ``api``
(``/api``), ``results`` (``/results``) and ``web`` (``/``) - around a
``Coordinator``. Serve it with a production WSGI server (``python -m
coordinator_app`` uses waitress), never Flask's development server.
"""
import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from . import api, prometheus, results
from .config import Config
from .service import Coordinator

log = logging.getLogger(__name__)

MAX_PLAN_BYTES = 16 * 1024 * 1024


def build_writers(config):
    """The optional writers ``config`` turns on (CloudWatch when a region is set)."""
    writers = []
    if config.cloudwatch_region:
        from .writers.cloudwatch import CloudWatchWriter
        writers.append(CloudWatchWriter(config.cloudwatch_region, config.cloudwatch_endpoint))
        log.info("CloudWatch writer on (region %s)", config.cloudwatch_region)
    return writers


def create_app(config=None, coordinator=None):
    """A Flask app serving ``coordinator`` (built from ``config`` and started if not given).

    The coordinator is ``app.extensions["stressgrid"]``; call its ``stop()``
    when the server stops.
    """
    config = config or Config()
    if coordinator is None:
        coordinator = Coordinator(config, writers=build_writers(config)).start()
    app = Flask(__name__)
    app.config["STRESSGRID_TOKEN"] = config.token
    app.config["STRESSGRID_METRICS_OPEN_ON_LOOPBACK"] = config.metrics_open_on_loopback
    app.config["MAX_CONTENT_LENGTH"] = MAX_PLAN_BYTES
    app.json.sort_keys = False
    app.extensions["stressgrid"] = coordinator

    from .web import blueprint as web_blueprint
    app.register_blueprint(api.blueprint)
    app.register_blueprint(results.blueprint)
    app.register_blueprint(prometheus.blueprint)
    app.register_blueprint(web_blueprint)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        """JSON errors under /api and /results; the default pages elsewhere."""
        if request.path.startswith(("/api/", "/results/")) or request.path in ("/api", "/results"):
            response = jsonify(error={"message": exc.description, "code": exc.name.lower().replace(" ", "_")})
            response.status_code = exc.code
            return response
        return exc

    return app
