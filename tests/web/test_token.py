"""The website against a coordinator that requires a bearer token (STRESSGRID_TOKEN)."""
import re
import tarfile

import pytest

from tests.web.conftest import running_stack
from tests.web.support import expect, short_run

TOKEN = "s3cret-token-for-the-website"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("web-token"), token=TOKEN) as stack:
        yield stack


@pytest.fixture(autouse=True)
def idle_coordinator(browser, stack):
    stack.idle()
    yield
    stack.idle()


def test_the_page_asks_for_the_token_once_and_keeps_it(stack, open_page, tmp_path):
    detail = short_run(stack, name="token-run")
    page = open_page(stack)
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#token-wrong")).to_be_hidden()
    # A wrong token is refused, and asked for again.
    page.fill("#token-input", "not-the-token")
    page.click("#token-submit")
    expect(page.locator("#token-wrong")).to_be_visible()
    expect(dialog).to_be_visible()
    page.fill("#token-input", TOKEN)
    page.click("#token-submit")
    expect(dialog).to_be_hidden()
    # The event stream carries the token too: the live feed runs.
    expect(page.locator("body")).to_have_attribute("data-feed", "live")
    expect(page.locator("#status-text")).to_have_text("live · 1 generator")
    row = page.locator(f'#history-table tr[data-run="{detail["id"]}"]')
    expect(row.locator(".flag-error")).to_contain_text("errors")
    # The archive needs the token as well: it is fetched with it and saved.
    with page.expect_download() as download_info:
        row.locator("a.download").click()
    download = download_info.value
    assert download.suggested_filename == f"{detail['id']}.tar.gz"
    saved = tmp_path / "archive.tar.gz"
    download.save_as(saved)
    with tarfile.open(saved, "r:gz") as archive:
        assert f"{detail['id']}/results.csv" in archive.getnames()

    # Kept in this browser: a reload asks nothing.
    page.reload()
    expect(page.locator("#status-text")).to_have_text("live · 1 generator")
    expect(dialog).to_be_hidden()
    assert page.evaluate("localStorage.getItem('stressgrid.token')") == TOKEN
    # Signing out forgets it, and the page asks again.
    page.click("#forget-token")
    expect(dialog).to_be_visible()
    assert page.evaluate("localStorage.getItem('stressgrid.token')") is None


def test_a_run_starts_from_the_form_with_the_token(stack, open_page):
    page = open_page(stack)
    page.fill("#token-input", TOKEN)
    page.click("#token-submit")
    expect(page.locator("#status-text")).to_have_text("live · 1 generator")
    page.fill("#plan-name", "token form run")
    page.select_option("#protocol", "tcp")
    page.fill("#hosts", "127.0.0.1")
    page.fill("#port", str(stack.redis_port))
    page.fill("#sustain", "30")
    page.fill("#rampup", "0")
    page.fill("#rampdown", "0")
    block = page.locator(".block").first
    block.locator(".script textarea").fill("await send('PING\\r\\n')\nawait recv()\nawait delay(200)\n")
    block.locator(".params textarea").fill("{}")
    block.locator(".block-size").fill("10")
    page.click("#start-button")
    expect(page.locator("#run-id")).to_have_text(re.compile(r"^token-form-run-"))
    expect(page.locator('[data-tile="devices"] .tile-value')).to_have_text("10", timeout=30000)
    page.click("#abort-button")
    page.click("#abort-button")
    expect(page.locator("#run-phase")).to_have_text("Aborted", timeout=30000)
