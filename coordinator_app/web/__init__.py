"""The management website (a placeholder page until the website lands).

It only has to be a blueprint named ``web`` mounted at ``/``; ``create_app``
registers whatever ``blueprint`` this module exports.
"""
from flask import Blueprint, Response

blueprint = Blueprint("web", __name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stressgrid coordinator</title></head>
<body><h1>Stressgrid coordinator</h1>
<p>The website is not here yet. The JSON API is: <code>GET /api/state</code>,
<code>GET /api/runs</code>, <code>POST /api/runs</code>, <code>GET /api/stream</code>.</p>
</body></html>
"""


@blueprint.get("/")
def index():
    """The placeholder home page."""
    return Response(_PAGE, mimetype="text/html")
