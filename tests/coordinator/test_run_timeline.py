"""The run timeline and cohort division as pure functions."""
import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator_app import run_timeline
from stressgrid.plan import Opts
from stressgrid.plan.split import split_exactly

pytestmark = pytest.mark.unit


def test_timeline_orders_starts_then_sustain_then_reverse_stops_then_cooldown():
    opts = Opts(ramp_steps=3, rampup_step_ms=100, sustain_ms=1000, rampdown_step_ms=50, cooldown_ms=200)
    timeline = run_timeline.build_timeline(opts)
    actions = [(s.at_ms, s.action, s.phase if s.action in ("phase", "end") else s.cohort)
               for s in timeline.steps]
    assert actions == [
        (0, "phase", "rampup"), (0, "start", 0), (100, "start", 1), (200, "start", 2),
        (300, "phase", "sustain"),
        (1300, "phase", "rampdown"), (1300, "stop", 2), (1350, "stop", 1), (1400, "stop", 0),
        (1450, "phase", "cooldown"),
        (1650, "end", "done"),
    ]
    assert timeline.total_ms == 1650 == opts.total_ms + opts.cooldown_ms
    assert timeline.phase_at(0) == ("rampup", 300)
    assert timeline.phase_at(299) == ("rampup", 1)
    assert timeline.phase_at(300) == ("sustain", 1000)
    assert timeline.phase_at(1449) == ("rampdown", 1)
    assert timeline.phase_at(1500) == ("cooldown", 150)
    assert timeline.phase_at(1650) == ("done", 0)


def test_zero_length_phases_are_skipped_but_cohorts_still_start_and_stop():
    opts = Opts(ramp_steps=2, rampup_step_ms=0, sustain_ms=0, rampdown_step_ms=0, cooldown_ms=0)
    timeline = run_timeline.build_timeline(opts)
    assert [s.action for s in timeline.steps if s.action in ("start", "stop")] == \
        ["start", "start", "stop", "stop"]
    assert [s.cohort for s in timeline.steps if s.action == "stop"] == [1, 0]
    assert timeline.phases == ()
    assert timeline.steps[-1].action == "end" and timeline.total_ms == 0


@pytest.mark.parametrize("sizes,steps,generators", [
    ([10], 1, 1), ([17, 3], 4, 3), ([1], 5, 7), ([1000, 999, 1], 7, 4), ([5], 10, 2),
])
def test_cohorts_split_over_generators_lose_nothing_and_rotate_round_robin_exactly(sizes, steps, generators):
    blocks = [{"script": f"s{i}", "params": {"i": i}, "size": size} for i, size in enumerate(sizes)]
    routing_ids = [f"g{i}".encode() for i in range(generators)]
    cursor = 0
    started = {i: 0 for i in range(len(sizes))}
    offsets = []
    for index in range(steps):
        cohort = run_timeline.cohort_blocks(blocks, steps, index)
        assert all(block["size"] > 0 for block in cohort)
        assignments, cursor = run_timeline.assign_cohort(cohort, routing_ids, index, cursor)
        assert sum(a.size for a in assignments) == sum(b["size"] for b in cohort)
        for assignment in assignments:
            assert assignment.size > 0 and assignment.generator in routing_ids
            offsets.append((assignment.address_offset, assignment.size))
            for block in assignment.blocks:
                started[block["params"]["i"]] += block["size"]
    assert [started[i] for i in range(len(sizes))] == sizes
    # Offsets tile 0..total without gaps or overlaps: strict round-robin over the run.
    position = 0
    for offset, size in offsets:
        assert offset == position
        position += size
    assert position == cursor == sum(sizes)


def test_small_cohorts_rotate_their_remainder_over_generators():
    blocks = [{"script": "", "params": {}, "size": 4}]
    per_generator = {b"a": 0, b"b": 0, b"c": 0, b"d": 0}
    cursor = 0
    for index in range(4):
        cohort = run_timeline.cohort_blocks(blocks, 4, index)
        assignments, cursor = run_timeline.assign_cohort(cohort, list(per_generator), index, cursor)
        for assignment in assignments:
            per_generator[assignment.generator] += assignment.size
    assert per_generator == {b"a": 1, b"b": 1, b"c": 1, b"d": 1}


@pytest.mark.parametrize("size,steps", [(10, 3), (3, 10), (100000, 7), (1, 1)])
def test_cohort_sizes_split_each_block_exactly_over_the_ramp_steps(size, steps):
    blocks = [{"script": "", "params": {}, "size": size}]
    sizes = [sum(b["size"] for b in run_timeline.cohort_blocks(blocks, steps, i)) for i in range(steps)]
    assert sizes == split_exactly(size, steps)


def test_no_generators_get_no_assignments():
    assert run_timeline.assign_cohort([{"size": 3}], [], 0, 5) == ([], 5)


def test_run_id_replaces_non_alphanumerics_and_stamps_utc():
    now = datetime.datetime(2024, 2, 29, 23, 59, 58, tzinfo=datetime.timezone.utc)
    assert run_timeline.run_id("10k browsing/photos_c5.2xlarge", now) == \
        "10k-browsing-photos-c5-2xlarge-20240229235958"
    assert run_timeline.run_id("ok", None).startswith("ok-20")


@given(devices=st.integers(0, 500), rooms=st.lists(st.integers(-5, 200), max_size=8))
def test_filling_rooms_places_every_device_that_fits_and_never_overfills(devices, rooms):
    counts = run_timeline.fill_rooms(devices, rooms)
    assert len(counts) == len(rooms)
    assert sum(counts) == min(devices, sum(max(room, 0) for room in rooms))
    assert all(0 <= count <= max(room, 0) for count, room in zip(counts, rooms))
    # As even as the rooms allow: a generator more than one below another's count is full.
    for count, room in zip(counts, rooms):
        assert count == max(room, 0) or count >= max(counts) - 1


def test_filling_rooms_shares_evenly_then_gives_the_rest_to_who_has_room():
    assert run_timeline.fill_rooms(10, [100, 100, 100]) == [4, 3, 3]
    assert run_timeline.fill_rooms(10, [1, 100, 2]) == [1, 7, 2]
    assert run_timeline.fill_rooms(10, [1, 2]) == [1, 2]


@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=4), data=st.data())
def test_carving_an_assignment_keeps_every_device_its_block_and_its_target(sizes, data):
    blocks = [{"script": "s", "params": {"block": i}, "size": size} for i, size in enumerate(sizes)]
    assignment = run_timeline.Assignment(b"lost", blocks, address_offset=7)
    total = assignment.size
    cuts = sorted(data.draw(st.lists(st.integers(0, total), max_size=4)))
    counts = [b - a for a, b in zip([0] + cuts, cuts + [total])]
    generators = [f"g{i}".encode() for i in range(len(counts))]
    parts = run_timeline.carve(assignment, generators, counts)
    assert [p.size for p in parts] == [c for c in counts if c]
    assert [p.generator for p in parts] == [g for g, c in zip(generators, counts) if c]
    # Device k of the lost assignment keeps its block and its round-robin target 7 + k.
    devices = [(p.address_offset + k, block["params"]["block"]) for p in parts
               for k, block in enumerate(b for b in p.blocks for _ in range(b["size"]))]
    assert devices == [(7 + k, block["params"]["block"])
                       for k, block in enumerate(b for b in blocks for _ in range(b["size"]))]
