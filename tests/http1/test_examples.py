"""The HTTP examples, run as shipped against real servers."""
import json

from stressgrid.runtime.local import run_local
from tests.conftest import example
from tests.http1.test_devices import errors, plan


def test_http_get_example_against_nginx(nginx_servers):
    result = run_local(plan(example("http_get.py"), nginx_servers.plain, size=5,
                            params={"path": "/index.html", "iterations": 50}), 20,
                       until=lambda agg: agg.histogram("get_us").total_count >= 500)
    assert errors(result) == {}
    gets = result.histograms["get_us"].total_count
    assert gets >= 500
    assert result.counters["status_200_count"] == gets
    # One connection per 50 GETs: a device starts over (and reconnects) after its iterations.
    assert result.counters["conn_count"] <= gets // 50 + 5


def test_elasticsearch_example_against_nginx_webdav(nginx_servers, web_root):
    params = {"iterations": 5, "delay_ms": 1, "source_field": ""}
    result = run_local(plan(example("elasticsearch_http.py"), nginx_servers.dav, size=4, params=params), 30,
                       until=lambda agg: agg.histogram("get_us").total_count >= 40)
    assert errors(result) == {}
    gets = result.histograms["get_us"].total_count
    puts = result.histograms["put_us"].total_count
    assert gets >= 40 and puts >= gets
    put_statuses = {name: value for name, value in result.counters.items() if name.startswith("put_status_")}
    assert set(put_statuses) <= {"put_status_201_count", "put_status_204_count"}
    assert sum(put_statuses.values()) == puts
    # The documents really are on the server's disk.
    stored = list((web_root / "dav" / "stress" / "_doc").iterdir())
    assert len(stored) >= 40
    assert len(json.loads(stored[0].read_text())["value"]) == 65536


def test_elasticsearch_example_against_elasticsearch_api(edge):
    result = run_local(plan(example("elasticsearch_http.py"), edge.port, size=3,
                            params={"iterations": 4, "delay_ms": 1}), 30,
                       until=lambda agg: agg.histogram("get_us").total_count >= 24)
    assert errors(result) == {}
    assert result.histograms["get_us"].total_count >= 24
    assert result.counters["put_status_201_count"] >= 24
    assert len(edge.documents) >= 24
