"""Request bodies as JSON, refused with a clear message when they cannot be read.

``parse`` never hands a body to ``json.loads`` that nests deeper than
``MAX_DEPTH`` (the decoder recurses, so a body of many brackets would
exhaust the stack), and every failure is a ``BodyError`` naming the problem.
"""
import json
import re

MAX_DEPTH = 64
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class BodyError(ValueError):
    """A request body that is not acceptable JSON; the message says why."""


def nesting_depth(text):
    """How deep arrays and objects nest in JSON ``text`` (brackets inside strings not counted)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse(data):
    """The JSON value of the bytes ``data``; raises ``BodyError``."""
    if not data:
        raise BodyError("the body is empty; send JSON")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8 text (byte {exc.start})") from None
    if nesting_depth(text) > MAX_DEPTH:
        raise BodyError(f"the body nests arrays or objects deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BodyError(f"the body is not valid JSON: {exc}") from None
