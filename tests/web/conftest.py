"""Browser tests of the management website: Playwright driving Debian's Chromium.

Each test module gets its own real stack - a coordinator process, a real
generator host agent and a redis-server to load - and one browser; each test
a fresh browser context (no cookies, no localStorage). Tests wait on page
conditions, never on fixed sleeps.

Needs ``apt:chromium`` and ``pip:playwright`` (tests/web/REQUIREMENTS.txt);
Playwright's own browser downloads are never used. Without them the tests
are skipped with a message, or fail when STRESSGRID_WEB_REQUIRE_BROWSER=1.
STRESSGRID_WEB_SCREENSHOTS=DIR saves a screenshot of each test's page there.
"""
import contextlib
import os
import pathlib
import shutil
import urllib.parse

import pytest

from tests.coordinator.support import coordinator_process, generator_processes, wait_until
from tests.support.servers import redis_server

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REQUIRE_BROWSER = os.environ.get("STRESSGRID_WEB_REQUIRE_BROWSER") == "1"
SCREENSHOTS = os.environ.get("STRESSGRID_WEB_SCREENSHOTS")
# Chromium reports a fetch answered 4xx as a console error; those are expected here.
EXPECTED_CONSOLE = ("Failed to load resource",)


def _missing(what):
    message = f"website tests need {what} (see tests/web/REQUIREMENTS.txt)"
    if REQUIRE_BROWSER:
        pytest.fail(message)
    pytest.skip(message)


def chromium_path():
    """Debian's Chromium (STRESSGRID_CHROMIUM overrides), or None."""
    for candidate in (os.environ.get("STRESSGRID_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate:
            found = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
            if found:
                return found
    return None


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (closed before the next module runs)."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("pip:playwright")
    # Page conditions may take a while on a busy two-core machine; they are waited for, not slept on.
    expect.set_options(timeout=20000)
    path = chromium_path()
    if path is None:
        _missing("apt:chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Stack:
    """A coordinator (and its API client), its generators and a redis target."""

    def __init__(self, coordinator, generators, redis_port):
        self.coordinator = coordinator
        self.generators = generators
        self.redis_port = redis_port
        self.api = coordinator.api
        self.url = coordinator.api.base_url

    def idle(self, timeout=60):
        """Abort whatever run is active and wait until the coordinator has none."""
        state = self.api.state()
        if state["run"]:
            self.api.post(f"/api/runs/{state['run']['id']}/abort")
        wait_until(lambda: self.api.state()["run"] is None, timeout, interval=0.1,
                   message="the coordinator to be idle")


@contextlib.contextmanager
def running_stack(tmp_path, token=None, generators=("web-gen",)):
    with redis_server(tmp_path) as redis_port, \
            coordinator_process(tmp_path, token=token) as coordinator, \
            generator_processes(coordinator, tmp_path, list(generators)) as started:
        coordinator.api.wait_generators(len(generators))
        yield Stack(coordinator, started, redis_port)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A coordinator without a token, one generator and redis, for a whole module."""
    with running_stack(tmp_path_factory.mktemp("web")) as stack:
        yield stack


class PageWatch:
    """What a page did: its requests (and any that tried to leave the coordinator) and its errors."""

    def __init__(self, origin):
        self.origin = origin
        self.requests = []
        self.outside = []
        self.errors = []

    def route(self, route):
        url = route.request.url
        self.requests.append((route.request.method, url))
        parts = urllib.parse.urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin and parts.scheme not in ("data", "blob"):
            self.outside.append(url)
            route.abort()
            return
        route.continue_()

    def console(self, message):
        if message.type == "error" and not message.text.startswith(EXPECTED_CONSOLE):
            self.errors.append(f"console: {message.text}")

    def posts(self, path):
        return [url for method, url in self.requests if method == "POST" and urllib.parse.urlsplit(url).path == path]


@pytest.fixture
def open_page(browser, request):
    """``open_page(stack)``: a fresh context's page on the stack's website, watched.

    Every request that leaves the coordinator's origin is blocked and fails the
    test, as does any script error on the page.
    """
    opened = []

    def open_(stack, path="/", viewport=(1400, 900)):
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                      accept_downloads=True)
        context.set_default_timeout(20000)
        page = context.new_page()
        watch = PageWatch(stack.url)
        page.route("**/*", watch.route)
        page.on("console", watch.console)
        page.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))
        page.watch = watch
        opened.append((context, page, watch))
        page.goto(stack.url + path)
        return page

    yield open_
    for context, page, watch in opened:
        if SCREENSHOTS:
            directory = pathlib.Path(SCREENSHOTS)
            directory.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):
                page.screenshot(path=str(directory / f"{request.node.name}.png"), full_page=True)
        # A route handler of the test may still be fetching: let it end quietly, then close.
        with contextlib.suppress(Exception):
            page.unroute_all(behavior="ignoreErrors")
        context.close()
    for context, page, watch in opened:
        assert not watch.outside, f"the page reached outside the coordinator: {watch.outside}"
        assert not watch.errors, "\n".join(watch.errors)
