"""Feeder files: the rows of a block's ``data`` from CSV, JSON lines or a JSON list.

A CSV file's first line names the columns; every later line is a row whose
values are strings. A JSON-lines file (``.jsonl``, ``.ndjson``) has one JSON
object per line (blank lines are skipped). A ``.json`` file holds one list of
objects. ``FeederError`` names the line of the first bad row, and a file over
``MAX_DATA_BYTES`` is rejected with its size before it is read.
"""
import csv
import io
import json
import os

from .model import MAX_DATA_BYTES, MAX_DATA_ROWS

FORMATS = ("csv", "jsonl", "json")
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


class FeederError(ValueError):
    """A feeder file that cannot become rows; ``line`` is 1-based, or ``None``."""

    def __init__(self, message, line=None):
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


def format_of(name):
    """The feeder format a file name's suffix says, or ``None``."""
    return _SUFFIXES.get(os.path.splitext(name)[1].lower())


def check_size(size):
    """Raise ``FeederError`` when a feeder file of ``size`` bytes is too big to read."""
    if size > MAX_DATA_BYTES:
        raise FeederError(f"the file is {size} bytes; feeder data may be at most {MAX_DATA_BYTES} bytes")


def parse_rows(text, kind):
    """The rows (a list of dicts) that feeder file ``text`` of format ``kind`` holds."""
    check_size(len(text.encode()))
    text = text.removeprefix("\ufeff")  # the byte-order mark spreadsheets put first
    if kind == "csv":
        rows = _csv_rows(text)
    elif kind == "jsonl":
        rows = _jsonl_rows(text)
    elif kind == "json":
        rows = _json_rows(text)
    else:
        raise FeederError(f"unknown feeder format {kind!r}; expected one of {', '.join(FORMATS)}")
    if not rows:
        raise FeederError("the file has no rows")
    if len(rows) > MAX_DATA_ROWS:
        raise FeederError(f"the file has {len(rows)} rows; at most {MAX_DATA_ROWS} are allowed")
    return rows


def _csv_rows(text):
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise FeederError("the file is empty; its first line must name the columns")
        if not all(name.strip() for name in header):
            raise FeederError("every column of the first line needs a name", 1)
        if len(set(header)) != len(header):
            raise FeederError("two columns of the first line have the same name", 1)
        rows = []
        for values in reader:
            if not values:
                continue  # a blank line
            if len(values) != len(header):
                raise FeederError(f"has {len(values)} values; the first line names {len(header)} columns",
                                  reader.line_num)
            rows.append(dict(zip(header, values)))
    except csv.Error as exc:
        raise FeederError(f"not valid CSV: {exc}", reader.line_num) from None
    return rows


def _jsonl_rows(text):
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeederError(f"not valid JSON: {exc.msg} at column {exc.colno}", number) from None
        if not isinstance(row, dict):
            raise FeederError("must be a JSON object", number)
        rows.append(row)
    return rows


def _json_rows(text):
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FeederError(f"not valid JSON: {exc.msg} at column {exc.colno}", exc.lineno) from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise FeederError("a .json feeder file must hold one list of JSON objects")
    return rows
