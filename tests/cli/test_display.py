"""The live block on a terminal: every value stays on screen, whatever the terminal's width."""
import io
import re

import pytest

from stressgrid.cli.display import Display

pytestmark = pytest.mark.unit

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Terminal(io.StringIO):
    """What the display writes to a terminal (it only asks whether it is one)."""

    encoding = "utf-8"

    def isatty(self):
        return True

    def screen(self):
        """The lines of the last drawing, without escape sequences."""
        last = self.getvalue().rsplit("\x1b[J", 1)[-1]
        return ANSI.sub("", last).splitlines()


STATE = {
    "run": {"id": "10k-browsing-photos-c5-2xlarge-20261202154800", "state": "sustain",
            "elapsed_ms": 65_000, "remaining_ms": 3_540_000, "devices": 10_000,
            "started_at": 100.0},
    "telemetry": {"time": 165.0, "generator_count": 12, "active_device_number": 10_000,
                  "max_cpu_percent": 57.4, "loop_lag_p99_us": 2_400,
                  "counters": {"network_rx_bytes": {"per_second": 123_456_789, "total": 1},
                               "network_tx_bytes": {"per_second": 98_765_432, "total": 1},
                               "response_count": {"per_second": 45_678.0, "total": 2_000_000}},
                  "histograms": {"headers_us": {"p50": 850, "p90": 1_900, "p99": 12_300,
                                                "max": 250_000, "count": 45_678}},
                  "errors": {}},
}
STATUS_VALUES = ["generators 12", "devices 10,000/10,000", "network rx 123.5MB/s tx 98.8MB/s",
                 "generator cpu 57%", "loop lag p99 2.4ms"]
HEAD_VALUES = ["10k-browsing-photos-c5-2xlarge-20261202154800", "sustain", "59:00 left",
               "(elapsed 1:05)"]


@pytest.mark.parametrize("columns", [60, 80, 100, 200])
def test_every_status_value_is_shown_at_any_width(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    terminal = Terminal()
    display = Display(terminal, color=False)
    display.update(STATE, STATE["run"]["id"])
    screen = terminal.screen()
    assert all(len(line) < columns for line in screen), screen
    text = "\n".join(screen)
    for value in STATUS_VALUES + HEAD_VALUES:
        assert value in text, (value, screen)  # whole: a line breaks between values only
    assert "response" in text and "45,678" in text


def test_at_80_columns_the_status_line_wraps_between_values(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    terminal = Terminal()
    display = Display(terminal, color=False)
    display.update(STATE, STATE["run"]["id"])
    screen = terminal.screen()
    assert screen[:3] == [
        "10k-browsing-photos-c5-2xlarge-20261202154800   sustain   59:00 left",
        "(elapsed 1:05)",
        "generators 12   devices 10,000/10,000   network rx 123.5MB/s tx 98.8MB/s",
    ]
    assert screen[3] == "generator cpu 57%   loop lag p99 2.4ms"
    # The next redraw moves up over every row drawn, wrapped ones included.
    display.update(STATE, STATE["run"]["id"])
    assert terminal.getvalue().count(f"\x1b[{len(screen)}A\x1b[J") == 1


def test_a_lagging_loop_is_shown_beside_cpu_as_a_warning_and_not_among_the_latencies(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    state = {"run": STATE["run"], "telemetry": dict(
        STATE["telemetry"], loop_lag_p99_us=350_000, loop_lag_warning=True,
        histograms=dict(STATE["telemetry"]["histograms"],
                        worker_loop_lag_us={"p50": 90_000, "p90": 300_000, "p99": 350_000, "max": 351_000,
                                            "count": 10}))}
    terminal = Terminal()
    Display(terminal, color=False).update(state, STATE["run"]["id"])
    text = "\n".join(terminal.screen())
    assert "loop lag p99 350ms" in text
    assert "workers' event loops lag over 100ms: the latencies include the generator's delay" in text
    assert "worker_loop_lag_us" not in text and "headers_us" in text
