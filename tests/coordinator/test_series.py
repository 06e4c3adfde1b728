"""The report's per-second series: what it keeps of each second, and its size bound."""
import pytest

from coordinator_app.writers.series import RunSeries

pytestmark = pytest.mark.unit


def telemetry(at, responses=0.0, errors=0.0):
    return {"time": at, "active_device_number": 7, "max_cpu_percent": 12.5,
            "counters": {"response_count": {"per_second": responses, "total": 1},
                         "timeout_error_count": {"per_second": errors, "total": 1},
                         "network_tcp_retransmit_error_count": {"per_second": 99.0, "total": 1}},
            "histograms": {"headers_us": {"count": 3, "p50": 10, "p90": 20, "p99": 30, "max": 40}}}


def test_a_second_becomes_a_point_and_seconds_before_the_run_are_ignored():
    series = RunSeries(started_at=100.0)
    series.add(telemetry(99.5, 5.0))
    series.add(telemetry(101.0, 5.0, 2.0))
    [point] = series.points
    assert point.elapsed_s == 1.0 and point.active_devices == 7 and point.cpu_percent == 12.5
    assert point.rates["response"] == 5.0 and point.quantiles == {"headers_us": (10, 20, 30)}
    assert point.errors_per_second == 2.0  # host retransmits are not the run's errors


def test_the_series_stays_bounded_and_evenly_spaced():
    series = RunSeries(started_at=0.0, max_points=10)
    for second in range(1, 101):
        series.add(telemetry(float(second)))
    assert len(series.points) < 10
    times = [p.elapsed_s for p in series.points]
    gaps = {b - a for a, b in zip(times, times[1:])}
    assert len(gaps) == 1 and times[0] == 1.0
