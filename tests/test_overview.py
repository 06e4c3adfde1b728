"""The run at a glance: which rate and latency are a run's main ones, and its points."""
import pytest

from coordinator_app.overview import POINT_FIELDS, live_point, main_names, names_of, overview
from coordinator_app.writers.series import RunSeries

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("counters, histograms, names", [
    # HTTP: responses and their headers' latency, whatever else counted more.
    ({"response_count": 10, "network_rx_bytes_count": 10**6, "conn_count": 5},
     {"headers_us": 10, "body_us": 10, "conn_us": 50, "cpu_percent": 99}, ("response", "headers_us")),
    # Raw TCP: receives, and the busiest histogram of the script's own.
    ({"receive_count": 7, "send_count": 9}, {"set_us": 4, "get_us": 5, "worker_loop_lag_us": 900},
     ("receive", "get_us")),
    # Nothing main yet: the busiest counter that is neither an error nor the network's.
    ({"timeout_error_count": 50, "check_x_pass_count": 90, "publish_count": 3, "network_tx_bytes": 10},
     {"request_a_headers_us": 9}, ("publish", None)),
    ({}, {}, (None, None)),
])
def test_the_main_rate_and_latency(counters, histograms, names):
    assert main_names(counters, histograms) == names


def test_a_second_becomes_a_point_of_the_main_figures():
    telemetry = {"time": 1010.5, "active_device_number": 40, "phase": "sustain",
                 "counters": {"response_count": {"per_second": 900.0, "total": 9000},
                              "timeout_error_count": {"per_second": 2.0, "total": 3},
                              "network_tcp_retransmit_error": {"per_second": 1.0, "total": 1}},
                 "histograms": {"headers_us": {"count": 900, "p50": 100, "p90": 200, "p99": 900, "max": 1000}}}
    summary = {"counters": {"response": {"total": 9000}}, "histograms": {"headers_us": {"count": 9000}}}
    names = names_of(summary)
    # The network's own errors are the host's, not the run's.
    assert live_point(telemetry, 10.5, "sustain", names) == [10.5, "sustain", 40, 900.0, 100, 200, 900, 2.0]
    series = RunSeries(started_at=1000.0)
    series.add(telemetry)
    shown = overview(series.points, summary)
    assert shown == {"names": {"rate": "response", "latency": "headers_us"}, "fields": list(POINT_FIELDS),
                     "points": [[10.5, "sustain", 40, 900.0, 100, 200, 900, 2.0]]}
    # Without a summary (nothing counted yet) the point has no main figures.
    assert overview(series.points, None)["points"] == [[10.5, "sustain", 40, None, None, None, None, 2.0]]
