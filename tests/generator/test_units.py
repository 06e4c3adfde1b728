"""Pure parts of the generator: cohort splitting and bookkeeping, config, limits, host metrics."""
import queue
import resource
import threading

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from stressgrid import wire
from stressgrid.generator.cohorts import CohortBook, CohortError, check_start_cohort, fit_shares, split_cohort
from stressgrid.generator.config import DEFAULT_COORDINATOR_URL, config_from
from stressgrid.generator.host_metrics import TCP_RETRANSMITS, HostSampler, read_tcp_retransmits
from stressgrid.generator.limits import (RESERVED_FILES_PER_WORKER, OpenFileLimit, device_capacity,
                                         raise_open_file_limit, worker_capacities)
from stressgrid.generator.loop_health import LoopWatchdog
from stressgrid.generator.stop_deadlines import StopDeadlines, describe_stop, stop_key
from stressgrid.join_token import ENV as JOIN_TOKEN_ENV
from stressgrid.join_token import JoinToken
from stressgrid.metrics import MetricsAggregate
from stressgrid.plan.script import SCRIPT_FILENAME

pytestmark = pytest.mark.unit

ADDRESS = {"host": "127.0.0.1", "port": 1, "protocol": "udp"}


def start(sizes, offset=0, cohort_id="1"):
    return wire.StartCohort(run_id="r", cohort_id=cohort_id,
                            blocks=[{"script": f"# block {i}", "params": {}, "size": size}
                                    for i, size in enumerate(sizes)],
                            addresses=[ADDRESS], opts={}, address_offset=offset)


def test_seven_devices_over_two_workers():
    shares, cursor = split_cohort(start([7], offset=5), 2)
    assert [(s.worker_index, s.devices, s.start.address_offset) for s in shares] == [(0, 4, 5), (1, 3, 9)]
    assert cursor == 1
    shares, cursor = split_cohort(start([7], offset=12), 2, cursor)
    assert [(s.worker_index, s.devices, s.start.address_offset) for s in shares] == [(0, 3, 12), (1, 4, 15)]
    assert cursor == 0


def test_remainders_of_blocks_go_to_different_workers():
    shares, _ = split_cohort(start([1, 1, 1]), 3)
    assert [(s.worker_index, [b["script"] for b in s.start.blocks]) for s in shares] == \
        [(0, ["# block 0"]), (1, ["# block 1"]), (2, ["# block 2"])]


def test_workers_without_devices_get_nothing():
    shares, _ = split_cohort(start([1]), 4)
    assert len(shares) == 1


@given(st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=4), min_size=1, max_size=6),
       st.integers(1, 8))
def test_splits_are_exact_and_cover_consecutive_addresses(cohorts, workers):
    cursor = 0
    offset = 0
    per_worker = [0] * workers
    for sizes in cohorts:
        shares, cursor = split_cohort(start(sizes, offset), workers, cursor)
        assert sum(s.devices for s in shares) == sum(sizes)
        for size_index, size in enumerate(sizes):
            assert sum(b["size"] for s in shares for b in s.start.blocks
                       if b["script"] == f"# block {size_index}") == size
        position = offset
        for share in shares:
            assert share.start.address_offset == position
            position += share.devices
            per_worker[share.worker_index] += share.devices
        offset = position
    # Dealing remainders in turn keeps workers within one device of each other per block.
    assert max(per_worker) - min(per_worker) <= sum(len(sizes) for sizes in cohorts)


def test_shares_are_cut_to_the_room_of_their_worker():
    shares, _ = split_cohort(start([3, 4], offset=10), 2)  # worker 0: 2+2, worker 1: 1+2
    fitted, unplaced = fit_shares(start([3, 4], offset=10), shares, room=[3, 0])
    assert unplaced == 4
    assert [(s.worker_index, s.devices, s.start.address_offset) for s in fitted] == [(0, 3, 10)]
    assert [(b["script"], b["size"]) for b in fitted[0].start.blocks] == [("# block 0", 2), ("# block 1", 1)]
    assert worker_capacities(10, 3) == [4, 3, 3]


@given(st.lists(st.integers(0, 50), min_size=1, max_size=4), st.integers(1, 6),
       st.lists(st.integers(-5, 60), min_size=6, max_size=6))
def test_fitting_places_what_fits_and_counts_the_rest(sizes, workers, room):
    cohort = start(sizes, offset=7)
    shares, _ = split_cohort(cohort, workers)
    fitted, unplaced = fit_shares(cohort, shares, room)
    placed = {s.worker_index: s.devices for s in fitted}
    for share in shares:
        assert placed.get(share.worker_index, 0) == min(share.devices, max(0, room[share.worker_index]))
    assert sum(placed.values()) + unplaced == sum(sizes)
    position = 7
    for share in fitted:
        assert share.start.address_offset == position and share.devices > 0
        position += share.devices


def test_book_tracks_shares_per_worker_and_run():
    book = CohortBook()
    first, _ = split_cohort(start([5], cohort_id="1"), 2)
    book.add(start([5], cohort_id="1"), first, 0.0)
    second, _ = split_cohort(start([2], cohort_id="2"), 2)
    book.add(start([2], cohort_id="2"), second, 1.0)
    with pytest.raises(CohortError):
        book.add(start([2], cohort_id="2"), second, 1.0)
    assert book.devices() == 7 and book.devices(0) == 4
    assert [s.cohort_id for s in book.shares_of(1, 2.0)] == ["1", "2"]
    assert book.runs() == ["r"]
    assert [s.devices for s in book.remove("r", "1")] == [3, 2]
    assert book.remove("r", "1") == []
    assert len(book.remove_run("r")) == 2 and not book


@pytest.mark.parametrize("message, field", [
    (start([]), "no blocks"),
    (wire.StartCohort("r", "1", [{"script": 1, "size": 1}], [ADDRESS], {}, 0), "blocks[0].script"),
    (wire.StartCohort("r", "1", [{"script": "", "size": -1}], [ADDRESS], {}, 0), "blocks[0].size"),
    (wire.StartCohort("r", "1", [{"script": "", "size": True}], [ADDRESS], {}, 0), "blocks[0].size"),
    (wire.StartCohort("r", "1", [{"script": "", "size": 1, "params": [1]}], [ADDRESS], {}, 0), "params"),
    (wire.StartCohort("r", "1", [{"script": "", "size": 1}], [], {}, 0), "no addresses"),
    (wire.StartCohort("r", "1", [{"script": "", "size": 1}], ["x"], {}, 0), "addresses[0]"),
    (wire.StartCohort("r", "1", [{"script": "", "size": 1}], [ADDRESS], {}, -1), "address_offset"),
])
def test_bad_cohorts_are_refused(message, field):
    with pytest.raises(CohortError, match=field.replace("[", r"\[").replace("]", r"\]")):
        check_start_cohort(message)


TOKEN = JoinToken.new(zmq.curve_keypair()[0])


def test_config_flags_override_environment():
    environment = {"COORDINATOR_URL": "tcp://env:1", "GENERATOR_ID": "env-id",
                   "STRESSGRID_COORDINATOR_GRACE_S": "4", JOIN_TOKEN_ENV: TOKEN.encode()}
    config = config_from([], environment)
    assert (config.coordinator_url, config.generator_id, config.coordinator_grace_s) == ("tcp://env:1", "env-id", 4.0)
    config = config_from(["--coordinator", "tcp://flag:2", "--id", "flag-id", "--workers", "3",
                          "--coordinator-grace", "1.5", "--log-level", "debug"], environment)
    assert (config.coordinator_url, config.generator_id, config.workers,
            config.coordinator_grace_s, config.log_level) == ("tcp://flag:2", "flag-id", 3, 1.5, "DEBUG")
    defaults = config_from([], {JOIN_TOKEN_ENV: TOKEN.encode()})
    assert defaults.coordinator_url == DEFAULT_COORDINATOR_URL and defaults.generator_id
    assert "." not in defaults.generator_id and defaults.workers >= 1
    with pytest.raises(SystemExit):
        config_from([], {"STRESSGRID_COORDINATOR_GRACE_S": "soon", JOIN_TOKEN_ENV: TOKEN.encode()})
    with pytest.raises(SystemExit):
        config_from(["--workers", "0"], {})


def test_the_join_token_comes_from_a_file_or_the_environment_and_is_required(tmp_path):
    token_file = tmp_path / "join-token"
    token_file.write_text(TOKEN.encode() + "\n")
    assert config_from(["--join-token-file", str(token_file)], {}).join_token == TOKEN
    assert config_from([], {JOIN_TOKEN_ENV: TOKEN.encode()}).join_token == TOKEN
    assert TOKEN.generator_keypair() == JoinToken.parse(TOKEN.encode()).generator_keypair()
    for argv, environ, words in (
            ([], {}, "no join token"),
            ([], {JOIN_TOKEN_ENV: "hello"}, "starts with 'sgj1_'"),
            ([], {JOIN_TOKEN_ENV: TOKEN.encode()[:-4]}, "64 bytes"),
            (["--join-token-file", str(tmp_path / "missing")], {}, "cannot read the join token file")):
        with pytest.raises(SystemExit, match=words):
            config_from(argv, environ)


def test_the_worker_stop_timeout_comes_from_its_flag_or_environment():
    token = {JOIN_TOKEN_ENV: TOKEN.encode()}
    assert config_from([], token).worker_stop_timeout_s == 3.0
    environment = {"STRESSGRID_WORKER_STOP_TIMEOUT_S": "0.5", **token}
    assert config_from([], environment).worker_stop_timeout_s == 0.5
    assert config_from(["--worker-stop-timeout", "7"], environment).worker_stop_timeout_s == 7.0
    with pytest.raises(SystemExit, match="STRESSGRID_WORKER_STOP_TIMEOUT_S"):
        config_from([], {"STRESSGRID_WORKER_STOP_TIMEOUT_S": "-1", **token})


def test_stop_deadlines_name_the_oldest_unconfirmed_stop_of_each_worker():
    deadlines = StopDeadlines(timeout_s=3.0)
    abort, stop = wire.Abort(run_id="r"), wire.StopCohort(run_id="r", cohort_id="c")
    deadlines.expect(0, stop_key(stop), now=10.0)
    deadlines.expect(0, stop_key(abort), now=11.0)
    deadlines.expect(1, stop_key(abort), now=11.0)
    assert deadlines.next_due() == 13.0 and deadlines.overdue(12.9) == []
    assert deadlines.overdue(13.0) == [(0, ("r", "c"))]
    deadlines.confirmed(0, stop_key(wire.StopCohort(run_id="r", cohort_id="c")))
    deadlines.confirmed(1, stop_key(wire.RunStopped(run_id="r")))
    assert deadlines.overdue(14.0) == [(0, ("r", None))] and describe_stop(("r", None)) == "abort of run 'r'"
    deadlines.progressed(0, now=14.0)  # its devices keep ending: it gets more time
    assert deadlines.overdue(16.9) == [] and deadlines.next_due() == 17.0
    deadlines.forget(0)
    assert deadlines.next_due() is None and deadlines.overdue(100.0) == []


def test_open_file_limit_is_raised_to_the_hard_limit():
    limit = raise_open_file_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert limit.soft == soft
    assert hard == resource.RLIM_INFINITY or soft == hard


def test_capacity_is_the_limit_less_a_reserve_per_worker():
    limit = OpenFileLimit(soft=10_000, hard=10_000, before=1024)
    assert device_capacity(limit, 2, system_file_max=10**9) == 2 * (10_000 - RESERVED_FILES_PER_WORKER)
    assert device_capacity(limit, 2, system_file_max=5_000) == 5_000 - 2 * RESERVED_FILES_PER_WORKER
    assert device_capacity(OpenFileLimit(100, 100, 100), 4, system_file_max=10**9) == 0


def test_retransmits_are_read_from_the_snmp_table(tmp_path):
    snmp = tmp_path / "snmp"
    snmp.write_text("Ip: Forwarding DefaultTTL\nIp: 1 64\n"
                    "Tcp: RtoAlgorithm ActiveOpens RetransSegs InErrs\nTcp: 1 10 77 0\n")
    assert read_tcp_retransmits(str(snmp)) == 77
    assert read_tcp_retransmits(str(tmp_path / "missing")) is None
    snmp.write_text("Tcp: RtoAlgorithm ActiveOpens RetransSegs InErrs\nTcp: 1 10 90 0\n")
    sampler = HostSampler(str(snmp))
    snmp.write_text("Tcp: RtoAlgorithm ActiveOpens RetransSegs InErrs\nTcp: 1 10 97 0\n")
    aggregate = MetricsAggregate()
    sampler.sample_into(aggregate)
    assert aggregate.counter(TCP_RETRANSMITS) == 7
    assert aggregate.histogram("cpu_percent").total_count == 1
    assert 1 <= aggregate.histogram("cpu_percent").max <= 100


def test_the_watchdog_reports_each_stall_once_with_the_main_threads_script_line():
    now = [100.0]
    stalls = queue.Queue()
    reported, held, closed = threading.Event(), threading.Event(), threading.Event()
    script = "def spin():\n    held.set(); reported.wait(10)\n"
    namespace = {"held": held, "reported": reported}
    exec(compile(script, SCRIPT_FILENAME, "exec"), namespace)

    def report(seconds, line):
        stalls.put((seconds, line))
        reported.set()

    watchdog = LoopWatchdog(lambda: (report, closed.set),
                            lambda globals_: script.splitlines() if globals_ is namespace else None,
                            stall_s=1.0, check_s=0.005, clock=lambda: now[0])
    watchdog.start()
    now[0] = 100.5  # not yet a stall
    # The clock jumps once the main thread is inside the script, which waits for the report.
    helper = threading.Thread(target=lambda: (held.wait(10), now.__setitem__(0, 102.0)))
    helper.start()
    namespace["spin"]()
    helper.join()
    assert stalls.get(timeout=10) == (2.0, "line 2: held.set(); reported.wait(10)")
    watchdog.tick()  # the loop turned: the next stall is a new one
    now[0] = 104.5
    assert stalls.get(timeout=10) == (2.5, None)  # the main thread is in no script now
    watchdog.stop()
    assert closed.is_set() and stalls.empty()
