"""Feeder rows: files read into rows, plans that carry them, and their exact spread over a fleet."""
import collections
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator_app import run_timeline
from stressgrid.generator.cohorts import CohortError, check_start_cohort, fit_shares, split_cohort
from stressgrid.plan import Plan, PlanError
from stressgrid.plan.feeder import FeederError, format_of, parse_rows
from stressgrid.plan.model import MAX_DATA_BYTES, MAX_DATA_ROWS
from stressgrid.plan.split import block_part
from stressgrid.wire import StartCohort

pytestmark = pytest.mark.unit


def plan_with(blocks):
    return {"name": "feeder", "addresses": [{"host": "127.0.0.1", "port": 80, "protocol": "http"}],
            "blocks": blocks}


# -- files ------------------------------------------------------------------------


@pytest.mark.parametrize("text,kind,rows", [
    ("user,password\nann,a1\nbob,\"b,2\"\n", "csv", [{"user": "ann", "password": "a1"},
                                                      {"user": "bob", "password": "b,2"}]),
    ("id\r\n1\r\n\r\n2\r\n", "csv", [{"id": "1"}, {"id": "2"}]),
    ("\ufeffid,name\r\n1,a\r\n", "csv", [{"id": "1", "name": "a"}]),  # as a spreadsheet saves it
    ('{"id": 1}\n\n{"id": 2, "tags": ["x"]}\n', "jsonl", [{"id": 1}, {"id": 2, "tags": ["x"]}]),
    ('[{"id": 1}, {"id": 2}]', "json", [{"id": 1}, {"id": 2}]),
])
def test_a_feeder_file_becomes_its_rows(text, kind, rows):
    assert parse_rows(text, kind) == rows


@pytest.mark.parametrize("text,kind,line,message", [
    ("a,b\n1,2\n3\n", "csv", 3, "has 1 values; the first line names 2 columns"),
    ("a,,c\n1,2,3\n", "csv", 1, "every column of the first line needs a name"),
    ("a,a\n1,2\n", "csv", 1, "same name"),
    ("a\n", "csv", None, "no rows"),
    ("", "csv", None, "first line must name the columns"),
    ('a,b\n"1,2\n', "csv", 2, "not valid CSV"),
    ('{"id": 1}\n{"id": \n', "jsonl", 2, "not valid JSON"),
    ('{"id": 1}\n[1]\n', "jsonl", 2, "must be a JSON object"),
    ('{"id": 1}', "json", None, "one list of JSON objects"),
    ('[{"id": 1}, 2]', "json", None, "one list of JSON objects"),
    ("a\n1\n", "xml", None, "unknown feeder format"),
])
def test_a_bad_feeder_file_is_rejected_with_its_line(text, kind, line, message):
    with pytest.raises(FeederError) as error:
        parse_rows(text, kind)
    assert error.value.line == line and message in error.value.message


def test_a_feeder_file_over_the_limit_is_rejected_with_its_size():
    text = "id\n" + "x" * MAX_DATA_BYTES
    with pytest.raises(FeederError, match=f"the file is {len(text)} bytes; feeder data may be at most "
                                          f"{MAX_DATA_BYTES} bytes"):
        parse_rows(text, "csv")


def test_the_format_comes_from_the_suffix():
    assert [format_of(name) for name in ("u.csv", "U.CSV", "u.jsonl", "u.ndjson", "u.json", "u.txt")] == \
        ["csv", "csv", "jsonl", "jsonl", "json", None]


# -- plans ------------------------------------------------------------------------


def test_a_plan_block_carries_its_rows_through_to_dict():
    plan = Plan.from_dict(plan_with([{"script": "await get('/')", "size": 3, "data": [{"id": 1}]},
                                     {"script": "await get('/')", "size": 2}]))
    assert plan.blocks[0].data == [{"id": 1}] and plan.blocks[1].data is None
    assert plan.to_dict()["blocks"][0]["data"] == [{"id": 1}]
    assert "data" not in plan.to_dict()["blocks"][1]


@pytest.mark.parametrize("data,field,message", [
    ([], "blocks[0].data", "non-empty list of JSON objects"),
    ({"id": 1}, "blocks[0].data", "non-empty list of JSON objects"),
    ([{"id": 1}, "two"], "blocks[0].data[1]", "must be a JSON object"),
    ([{}] * (MAX_DATA_ROWS + 1), "blocks[0].data", f"at most {MAX_DATA_ROWS} are allowed"),
    ([{"v": "x" * MAX_DATA_BYTES}], "blocks", f"at most {MAX_DATA_BYTES} are allowed"),
])
def test_bad_rows_in_a_plan_are_rejected_with_the_field(data, field, message):
    with pytest.raises(PlanError) as error:
        Plan.from_dict(plan_with([{"script": "await get('/')", "size": 3, "data": data}]))
    assert error.value.field == field and message in error.value.message


def test_a_script_may_read_its_row():
    Plan.from_dict(plan_with([{"script": "await get('/u/' + row['id'])", "size": 1, "data": [{"id": "a"}]}]))


def test_a_generator_refuses_rows_it_cannot_index():
    def start(block):
        return StartCohort(run_id="r", cohort_id="0", blocks=[dict({"script": "", "size": 1}, **block)],
                           addresses=[{"host": "h", "port": 1, "protocol": "tcp"}], opts={}, address_offset=0)
    check_start_cohort(start({"data": [{"a": 1}, {"a": 2}], "data_offset": 1}))
    for bad in ({"data": []}, {"data": [1]}, {"data": {"a": 1}}, {"data": [{"a": 1}], "data_offset": 1},
                {"data": [{"a": 1}], "data_offset": -1}, {"data": [{"a": 1}], "data_offset": True},
                {"data_offset": 2}):
        with pytest.raises(CohortError, match=r"blocks\[0\]\.data"):
            check_start_cohort(start(bad))


# -- the spread -----------------------------------------------------------------


def device_rows(blocks):
    """The row id of every device of ``blocks``, as the engine hands them out."""
    return [block["data"][(block.get("data_offset", 0) + k) % len(block["data"])]["id"]
            for block in blocks for k in range(block["size"])]


def test_a_part_smaller_than_the_rows_carries_only_its_own_rows():
    block = {"script": "s", "size": 10, "data": [{"id": i} for i in range(6)], "data_offset": 4}
    part = block_part(block, 3, 4)  # devices 3..6: rows 7..10 % 6
    assert part["data"] == [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}] and "data_offset" not in part
    assert device_rows([block_part(block, 0, 7)]) == device_rows([block])[:7]
    assert block_part(block, 0, 7)["data_offset"] == 4 and len(block_part(block, 0, 7)["data"]) == 6


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(1, 60), min_size=1, max_size=3), rows=st.lists(st.integers(1, 25),
       min_size=3, max_size=3), steps=st.integers(1, 6), generators=st.integers(1, 4),
       workers=st.integers(1, 3), lost=st.booleans())
def test_every_row_is_used_once_before_any_repeats_however_the_fleet_divides(
        sizes, rows, steps, generators, workers, lost):
    """Blocks go to cohorts, generators (one of which may be lost and carved over the
    others) and workers; the devices together see each block's rows ``k % len``."""
    blocks = [{"script": f"s{b}", "params": {}, "size": size,
               "data": [{"id": (b, j)} for j in range(rows[b])]} for b, size in enumerate(sizes)]
    routing_ids = [f"g{i}".encode() for i in range(generators)]
    seen = collections.Counter()
    cursor = 0
    worker_cursor = 0
    for index in range(steps):
        cohort = run_timeline.cohort_blocks(blocks, steps, index)
        assignments, cursor = run_timeline.assign_cohort(cohort, routing_ids, index, cursor)
        if lost and len(assignments) > 1:
            victim = assignments.pop()
            counts = run_timeline.fill_rooms(victim.size, [victim.size] * len(assignments))
            assignments += run_timeline.carve(victim, [a.generator for a in assignments], counts)
        for assignment in assignments:
            start = StartCohort(run_id="r", cohort_id=str(index), blocks=json.loads(json.dumps(assignment.blocks)),
                                addresses=[{"host": "h", "port": 1, "protocol": "tcp"}], opts={},
                                address_offset=assignment.address_offset)
            check_start_cohort(start)
            shares, worker_cursor = split_cohort(start, workers, worker_cursor)
            fitted, unplaced = fit_shares(start, shares, [10 ** 6] * workers)
            assert unplaced == 0
            for share in fitted:
                check_start_cohort(share.start)
                for block in share.start.blocks:
                    assert len(block["data"]) <= rows[int(block["script"][1:])]
                seen.update(map(tuple, device_rows(share.start.blocks)))
    expected = collections.Counter((b, k % rows[b]) for b, size in enumerate(sizes) for k in range(size))
    assert seen == expected
