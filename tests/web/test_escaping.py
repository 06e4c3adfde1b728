"""Text that generators send reaches the page as text, never as markup (in the real browser)."""
import pytest

from stressgrid import wire
from tests.coordinator.support import FakeGenerator, wait_until
from tests.web.support import expect

MARKUP = '<img src=x onerror="window.pwned = 1">'


@pytest.fixture(autouse=True)
def idle_coordinator(browser, stack):
    stack.idle()
    yield
    stack.idle()


def test_generator_ids_and_event_texts_are_shown_as_text(stack, open_page):
    page = open_page(stack)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    hostile = FakeGenerator(stack.coordinator, "<img src=x onerror=alert(1)>", register=False,
                            identity="hostile")
    honest = FakeGenerator(stack.coordinator, "xss-gen")
    try:
        hostile.register(wait=False)
        refused = hostile.wait_for(wire.Error, lambda m: "generator_id" in m.message)
        assert "A-Z a-z 0-9" in refused[0].message
        honest.send(wire.Event(run_id="", kind="worker_error", message=f"worker said {MARKUP}"))
        wait_until(lambda: any(MARKUP in e["message"] for e in stack.api.state()["events"]),
                   message="the event in the state")
        event = page.locator("#event-list li", has_text="worker said").first  # the newest: this test's
        expect(event).to_contain_text(MARKUP)  # the markup, as characters
        expect(page.locator('#generator-table tr[data-generator="xss-gen"]')).to_be_visible()
        assert page.locator("#event-list img").count() == 0
        assert page.locator("#generator-table img").count() == 0
        assert page.evaluate("window.pwned") is None and not dialogs
        assert not [g for g in stack.api.state()["generators"] if "<" in g["id"]]
    finally:
        hostile.close()
        honest.close()
