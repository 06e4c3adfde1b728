"""Results: ``GET /results/<run id>.tar.gz`` (the archive) and ``GET /results/<run id>.html``
(the self-contained report, shown in the browser)."""
from flask import Blueprint, current_app, send_from_directory

from .auth import protect

blueprint = protect(Blueprint("results", __name__, url_prefix="/results"))

# The report is inline-only: nothing in it may load or send anything.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; " \
                "form-action 'none'"


@blueprint.get("/<path:filename>")
def download(filename):
    """A run's archive or report (404 if there is no such file)."""
    directory = current_app.extensions["stressgrid"].results_dir
    if filename.endswith(".html"):
        response = send_from_directory(directory, filename, mimetype="text/html")
        response.headers["Content-Security-Policy"] = REPORT_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    return send_from_directory(directory, filename, as_attachment=True, mimetype="application/gzip")
