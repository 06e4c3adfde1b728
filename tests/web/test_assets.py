"""The website's page and assets as the coordinator serves them (no browser needed)."""
import pathlib
import re
import types

import pytest

from coordinator_app.app import create_app
from coordinator_app.config import Config

STATIC = pathlib.Path(__file__).resolve().parents[2] / "coordinator_app" / "static"
# The one address outside the coordinator the page may link to (never load from):
# the CloudWatch console, for runs whose metrics went there.
ALLOWED_LINKS = (".console.aws.amazon.com/cloudwatch/",)


@pytest.fixture
def client():
    app = create_app(Config(token="t0ken"), coordinator=types.SimpleNamespace())
    return app.test_client()


def test_the_page_and_its_assets_are_served_without_the_token(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:href|src)="(/assets/[^"?]+)', html)
    assert {"/assets/app.css", "/assets/js/app.js", "/assets/favicon.svg"} <= set(assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
    assert client.get("/assets/js/app.js").mimetype in ("text/javascript", "application/javascript")
    # The data stays behind the token.
    assert client.get("/api/state").status_code == 401


def test_every_module_the_page_imports_is_served(client):
    pending = ["/assets/js/app.js"]
    seen = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        assert response.status_code == 200, path
        for name in re.findall(r'from "\./([\w.]+)"', response.get_data(as_text=True)):
            pending.append(f"/assets/js/{name}")
    assert len(seen) >= 8


def test_nothing_is_loaded_from_elsewhere():
    for path in STATIC.rglob("*"):
        if not path.is_file() or path.suffix not in (".js", ".css", ".svg", ".html"):
            continue
        text = path.read_text()
        for url in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text):
            if url.startswith("//") and "/" not in url[2:]:
                continue  # a comment, not an address
            assert any(allowed in url for allowed in ALLOWED_LINKS) or url == "http://www.w3.org/2000/svg", \
                f"{path.name} refers to {url}"
        assert "@import" not in text and "@font-face" not in text, path.name
