"""Request bodies as JSON: the nesting check and the messages."""
import pytest

from coordinator_app.json_body import MAX_DEPTH, BodyError, nesting_depth, parse

pytestmark = pytest.mark.unit


def test_nesting_depth_counts_brackets_outside_strings():
    assert nesting_depth('{"a": [1, {"b": []}]}') == 4
    assert nesting_depth('{"a": "[[[[{{{{", "b": "\\\\\\"[["}') == 1
    assert nesting_depth("1") == 0


def test_parse_accepts_json_up_to_the_depth_and_refuses_the_rest():
    assert parse(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    for data, words in ((b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "deeper"),
                        (b"[" * 1_000_000, "deeper"), (b"{", "not valid JSON"), (b"", "empty"),
                        (b"\xc3", "not UTF-8")):
        with pytest.raises(BodyError, match=words):
            parse(data)
