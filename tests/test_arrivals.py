"""The open model's schedule (``stressgrid._core.arrivals``), its plan options and its split."""
import collections
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator_app.run_timeline import assign_arrivals
from stressgrid import wire
from stressgrid._core.arrivals import Schedule
from stressgrid.generator.cohorts import CohortBook, CohortError, check_start_cohort, split_cohort
from stressgrid.plan import Plan, PlanError
from stressgrid.plan.arrivals import ARRIVAL_SHARE, segments, share_part

pytestmark = pytest.mark.unit

SCRIPT = "await get('/')"


def arrival_plan(**opts):
    return {"name": "open", "addresses": [{"host": "127.0.0.1", "port": 80, "protocol": "http"}],
            "blocks": [{"script": SCRIPT, "size": 10}],
            "opts": {"executor": "arrival_rate", **opts}}


def expected_iterations(lines, elapsed_ms=None):
    """How many iterations the fleet schedules in the first ``elapsed_ms`` of ``segments``
    (default: all of it), as a real number."""
    total = 0.0
    start = 0
    for duration, start_rate, end_rate in lines:
        span = duration if elapsed_ms is None else max(0, min(duration, elapsed_ms * 1000 - start))
        if span:
            reached = start_rate + (end_rate - start_rate) * span / duration
            total += (start_rate + reached) / 2 * span / 1e9
        start += duration
    return total


def every_iteration(schedule):
    """All ``(us, k, block)`` of ``schedule``."""
    return schedule.take_until(schedule.duration_us + 1)


def per_second(times_us, seconds):
    counts = collections.Counter(us // 1_000_000 for us in times_us)
    return [counts.get(second, 0) for second in range(seconds)]


# -- the schedule ------------------------------------------------------------------------


def test_a_constant_rate_is_exact_for_the_whole_run():
    # 2,000 a second for an hour: iteration k is due at exactly k * 500 us, with no drift.
    schedule = Schedule([(3_600_000_000, 2_000_000, 2_000_000)], [1])
    iterations = every_iteration(schedule)
    assert len(iterations) == 7_200_000
    assert all(us == k * 500 for us, k, _ in iterations[:1000])
    assert iterations[-1] == (3_599_999_500, 7_199_999, 0)


def test_a_rate_with_no_whole_microsecond_interval_does_not_drift():
    # 3 a second: intervals of 333,333.33 us, each time rounded up from its own k.
    iterations = every_iteration(Schedule([(600_000_000, 3000, 3000)], [1]))
    assert len(iterations) == 1800
    assert [us for us, _, _ in iterations] == [math.ceil(k * 1_000_000 / 3) for k in range(1800)]


@settings(max_examples=60, deadline=None)
@given(generators=st.integers(1, 4), workers=st.lists(st.integers(1, 4), min_size=4, max_size=4),
       rate=st.integers(1, 5000), seconds=st.integers(1, 5))
def test_the_shares_of_generators_and_workers_partition_the_fleets_schedule(generators, workers, rate, seconds):
    lines = [(seconds * 1_000_000, rate * 1000, rate * 1000)]
    fleet = every_iteration(Schedule(lines, [3, 1]))
    parts = []
    for g in range(generators):
        offset, stride = share_part(0, 1, g, generators)
        for w in range(workers[g]):
            parts.append(every_iteration(Schedule(lines, [3, 1], *share_part(offset, stride, w, workers[g]))))
    merged = sorted(iteration for part in parts for iteration in part)
    assert merged == fleet
    # Every second, the workers' counts add up to the plan's.
    assert [sum(column) for column in zip(*(per_second([us for us, _, _ in part], seconds) for part in parts))] \
        == per_second([us for us, _, _ in fleet], seconds) == [rate] * seconds


def test_a_ramp_follows_its_line_every_second():
    # rate_steps [[10 s, 1000]]: from 0 to 1,000 a second in a straight line.
    lines = [(10_000_000, 0, 1_000_000)]
    counts = per_second([us for us, _, _ in every_iteration(Schedule(lines, [1]))], 10)
    for second, count in enumerate(counts):
        planned = expected_iterations(lines, (second + 1) * 1000) - expected_iterations(lines, second * 1000)
        assert abs(count - planned) <= max(1, 0.02 * planned), (second, count, planned)
    assert sum(counts) == round(expected_iterations(lines))


def test_blocks_get_iterations_by_their_weights_well_spread():
    schedule = Schedule([(1_000_000, 1_000_000, 1_000_000)], [5, 3, 2])
    blocks = [block for _, _, block in every_iteration(schedule)]
    for start in range(0, 1000, 10):  # every 10 consecutive iterations hold each block its weight
        assert collections.Counter(blocks[start:start + 10]) == {0: 5, 1: 3, 2: 2}


def test_poisson_arrivals_keep_the_rate_on_average():
    iterations = every_iteration(Schedule([(20_000_000, 500_000, 500_000)], [1], poisson=True, seed=7))
    assert 9_600 < len(iterations) < 10_400  # 10,000 expected; 4 standard deviations
    gaps = [b[0] - a[0] for a, b in zip(iterations, iterations[1:])]
    assert min(gaps) < 200 and max(gaps) > 8_000  # exponential gaps, not a metronome


def test_a_share_can_start_partway_through_the_schedule():
    lines = [(10_000_000, 100_000, 100_000)]
    late = every_iteration(Schedule(lines, [1], 1, 2, from_us=4_000_000))
    assert late[0] == (4_000_000 + 10_000, 401, 0)
    assert late == [it for it in every_iteration(Schedule(lines, [1], 1, 2)) if it[0] >= 4_000_000]


# -- the plan ----------------------------------------------------------------------------


def test_an_arrival_rate_plan_round_trips():
    plan = Plan.from_dict(arrival_plan(rate=250, sustain_ms=20_000, max_devices=40, pre_allocated_devices=10,
                                       arrivals="poisson"))
    assert plan.opts.open_model and plan.size == 40
    assert segments(plan.opts) == [(20_000_000, 250_000, 250_000)]
    assert Plan.from_dict(plan.to_dict()) == plan
    ramp = Plan.from_dict(arrival_plan(rate_steps=[[5000, 100], [10_000, 100], [5000, 0]]))
    assert ramp.opts.sustain_ms == 20_000
    assert segments(ramp.opts) == [(5_000_000, 0, 100_000), (10_000_000, 100_000, 100_000),
                                   (5_000_000, 100_000, 0)]
    assert ramp.opts.max_devices == 10 and ramp.opts.pre_allocated_devices == 10  # the blocks' sizes


def test_the_closed_model_stays_the_default():
    plan = Plan.from_dict({**arrival_plan(), "opts": {}})
    assert not plan.opts.open_model and plan.size == 10
    assert "rate" not in plan.to_dict()["opts"]


@pytest.mark.parametrize("opts, field", [
    ({"rate": -5}, "opts.rate"),
    ({"rate": 0}, "opts.rate"),
    ({"rate": "fast"}, "opts.rate"),
    ({"rate": 10, "rate_steps": [[1000, 10]]}, "opts.rate"),
    ({"rate_steps": [[1000, -1]]}, "opts.rate_steps[0]"),
    ({"rate_steps": [[-1000, 10]]}, "opts.rate_steps[0]"),
    ({"rate_steps": [[1000, 10], [1000]]}, "opts.rate_steps[1]"),
    ({"rate_steps": [[1000, 0]]}, "opts.rate_steps"),
    ({"rate": 10, "max_devices": 5, "pre_allocated_devices": 6}, "opts.pre_allocated_devices"),
    ({"rate": 10, "max_devices": 0.5}, "opts.max_devices"),
    ({"rate": 10, "arrivals": "bursty"}, "opts.arrivals"),
    ({"rate_steps": [[1000, 10]], "sustain_ms": 5000}, "opts.sustain_ms"),
])
def test_nonsense_is_rejected_naming_the_field(opts, field):
    with pytest.raises(PlanError) as caught:
        Plan.from_dict(arrival_plan(**opts))
    assert caught.value.field == field, caught.value


def test_arrival_options_need_the_arrival_rate_executor():
    with pytest.raises(PlanError) as caught:
        Plan.from_dict({**arrival_plan(), "opts": {"rate": 10}})
    assert caught.value.field == "opts.rate" and "arrival_rate" in str(caught.value)
    with pytest.raises(PlanError) as caught:
        Plan.from_dict(arrival_plan(rate=10, executor="swarm"))
    assert caught.value.field == "opts.executor"


# -- the split over generators and workers ------------------------------------------------


def test_generators_and_workers_split_the_pool_and_the_schedule_exactly():
    plan = Plan.from_dict(arrival_plan(rate=1000, sustain_ms=2000, max_devices=7, pre_allocated_devices=5))
    opts = plan.to_dict()["opts"]
    blocks = [block.to_dict() for block in plan.blocks]
    assignments, cursor = assign_arrivals(blocks, [b"g0", b"g1"], plan.opts, 0)
    assert [a.share["max_devices"] for a in assignments] == [4, 3] and cursor == 7
    lines = segments(plan.opts)
    seen = []
    for assignment in assignments:
        start = wire.StartCohort(run_id="r", cohort_id="1", blocks=assignment.blocks,
                                 addresses=[{"host": "127.0.0.1", "port": 80, "protocol": "http"}],
                                 opts={**opts, ARRIVAL_SHARE: assignment.share},
                                 address_offset=assignment.address_offset)
        check_start_cohort(start)
        shares, _ = split_cohort(start, 2)
        assert sum(s.start.opts[ARRIVAL_SHARE]["max_devices"] for s in shares) == assignment.share["max_devices"]
        for share in shares:
            part = share.start.opts[ARRIVAL_SHARE]
            seen += every_iteration(Schedule(lines, [10], part["offset"], part["stride"]))
    assert sorted(seen) == every_iteration(Schedule(lines, [10]))
    assert len(seen) == 2000


def test_a_generator_refuses_a_bad_share():
    plan = Plan.from_dict(arrival_plan(rate=10, sustain_ms=1000))
    start = wire.StartCohort(run_id="r", cohort_id="1", blocks=[b.to_dict() for b in plan.blocks],
                             addresses=[{"host": "127.0.0.1", "port": 80, "protocol": "http"}],
                             opts={**plan.to_dict()["opts"], ARRIVAL_SHARE: {
                                 "offset": 3, "stride": 2, "from_ms": 0, "behind_ms": 0, "max_devices": 1,
                                 "pre_allocated_devices": 0}}, address_offset=0)
    with pytest.raises(CohortError, match="offset < stride"):
        check_start_cohort(start)


def test_a_worker_late_to_start_runs_its_whole_share_and_a_restarted_one_resumes():
    plan = Plan.from_dict(arrival_plan(rate=100, sustain_ms=10_000, max_devices=4))
    start = wire.StartCohort(run_id="r", cohort_id="1", blocks=[b.to_dict() for b in plan.blocks],
                             addresses=[{"host": "127.0.0.1", "port": 80, "protocol": "http"}],
                             opts={**plan.to_dict()["opts"], ARRIVAL_SHARE: {
                                 "offset": 0, "stride": 1, "from_ms": 0, "behind_ms": 0, "max_devices": 4,
                                 "pre_allocated_devices": 4}}, address_offset=0)
    book = CohortBook()
    shares, _ = split_cohort(start, 2)
    book.add(start, shares, 50.0)
    now = 52.5
    # Worker 1 was not ready when the cohort came: it gets the share from its beginning, on
    # the cohort's clock (2.5 s of it due at once), so that it ends with the others.
    late = book.shares_of(1, now)[0].opts[ARRIVAL_SHARE]
    assert (late["from_ms"], late["behind_ms"]) == (0, 2500)
    # Worker 0 restarted 2.5 s in: it resumes there (what it ran before is not run twice).
    resumed = book.shares_of(0, now, resume=True)[0].opts[ARRIVAL_SHARE]
    assert (resumed["from_ms"], resumed["behind_ms"]) == (2500, 0)
