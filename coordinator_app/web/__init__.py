"""The management website: one page at ``/`` and its assets under ``/assets/``.

The page is plain HTML, CSS and JavaScript modules served by the coordinator
itself, so it works on a machine with no Internet access: no CDN, no web
fonts, no third-party code. Everything it shows comes from the JSON API
(``/api/...``), the same one the CLI uses; the page and its assets hold no
data, so they are served without the bearer token and the page asks for the
token when the API answers 401.

``create_app`` registers ``blueprint`` (named ``web``) at ``/``.
"""
import pathlib

from flask import Blueprint, make_response, render_template

from stressgrid import __version__

_PACKAGE = pathlib.Path(__file__).resolve().parent.parent

blueprint = Blueprint("web", __name__,
                      static_folder=str(_PACKAGE / "static"), static_url_path="/assets",
                      template_folder=str(_PACKAGE / "templates"))

# Only this origin's own scripts, styles and connections: the page works
# offline, and a plan name or script shown on it can never run as code.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))


@blueprint.get("/")
def index():
    """The single-page management website."""
    response = make_response(render_template("index.html", version=__version__))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.after_request
def asset_headers(response):
    """Assets are revalidated on every load, so an upgraded coordinator serves new code at once."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-cache")
    return response
