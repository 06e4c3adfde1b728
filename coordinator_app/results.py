"""Results archives: ``GET /results/<run id>.tar.gz``."""
from flask import Blueprint, current_app, send_from_directory

from .auth import protect

blueprint = protect(Blueprint("results", __name__, url_prefix="/results"))


@blueprint.get("/<path:filename>")
def download(filename):
    """A run's archive (404 if there is no such file)."""
    directory = current_app.extensions["stressgrid"].results_dir
    return send_from_directory(directory, filename, as_attachment=True, mimetype="application/gzip")
