"""Thresholds: pass/fail conditions over a run's exactly merged metrics (DESIGN.md section 3).

An expression is ``<metric> <stat> <op> <value>[unit]``:

* a histogram (a name ending ``_us``, or ``cpu_percent``) takes ``min``,
  ``mean``, ``max``, ``stddev`` or a percentile ``pNN`` / ``pNN.N`` (``p99``,
  ``p99.9``); its value takes the unit ``us``, ``ms`` or ``s`` (``_us``
  histograms) or ``%`` (``cpu_percent``), or none (the histogram's own unit);
* a counter (``response``, also spelled ``response_count``) takes ``count``
  (the whole-run total), ``rate`` (the mean per second over the sustain
  phase) or ``peak`` (the busiest second's rate); ``<name>_per_second`` takes
  ``mean`` (the same as ``rate``) or ``max``/``peak``;
* ``error_rate`` takes no statistic: the percentage of failed operations,
  ``100 * errors / (responses + receives + errors)``, where errors are every
  ``*_error`` counter except the generator hosts' TCP retransmits (see
  ``error_rate_percent``); its value takes ``%`` or none.

The value may instead refer to a baseline run: ``baseline`` or ``baseline *
<factor>`` (``headers_us p99 < baseline * 1.10``, ``response rate > baseline
* 0.95``) compares with the same statistic of the baseline run times the
factor. Such a threshold has ``baseline_factor`` set and no ``value`` until
``against(baseline value)`` gives it one (the coordinator does, when the run
is submitted with a baseline).

Operators: ``<`` ``<=`` ``>`` ``>=`` ``==`` ``!=``. ``parse`` raises
``ThresholdError`` with the 1-based column of the first problem; ``observe``
reads a threshold's value from a run's histograms and counter summary.
Nothing here does I/O.
"""
import dataclasses
import operator
import re

from .constants import HOST_WARNING_METRICS

HISTOGRAM_STATS = ("min", "mean", "max", "stddev")
COUNTER_STATS = ("count", "rate", "peak")
RATE_STATS = {"mean": "rate", "max": "peak", "peak": "peak"}
OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
             "==": operator.eq, "!=": operator.ne}
TIME_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}
ERROR_RATE = "error_rate"
BASELINE = "baseline"
MAX_EXPRESSION = 200

_TOKEN = re.compile(r"\s*(?:(?P<op><=|>=|==|!=|<|>)|(?P<times>\*)|(?P<number>\d+(?:\.\d+)?)|(?P<word>[A-Za-z_%][A-Za-z0-9_.%]*))")
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?|100)")
# What a script may name a metric (stressgrid._core.device.metric_key), with its suffix.
_METRIC = re.compile(r"[a-z0-9_]+")


class ThresholdError(ValueError):
    """A bad threshold expression; ``column`` (1-based) is where the problem starts."""

    def __init__(self, message, column):
        self.message = message
        self.column = column
        super().__init__(f"column {column}: {message}")


@dataclasses.dataclass(frozen=True)
class Threshold:
    """One parsed threshold.

    ``kind`` is ``histogram``, ``counter`` or ``error_rate``; ``key`` the
    histogram's name or the counter's base name (``response``); ``stat`` a
    histogram statistic, ``percentile`` (with ``percentile`` set), or a counter's
    ``count``/``rate``/``peak``; ``value`` in the metric's own unit
    (microseconds, percent, counts, per second). A threshold against a baseline
    has ``baseline_factor`` set and ``value`` ``None`` until ``against`` sets it
    (and ``baseline_value``, what the baseline run measured).
    """

    expr: str
    kind: str
    key: str
    stat: str
    percentile: float
    op: str
    value: float
    abort_on_fail: bool = False
    baseline_factor: float = None
    baseline_value: float = None

    @property
    def needs_baseline(self):
        """True while this threshold refers to a baseline run it has not been given."""
        return self.baseline_factor is not None and self.value is None

    def against(self, baseline_value):
        """This threshold with its limit set from the baseline run's ``baseline_value``."""
        return dataclasses.replace(self, baseline_value=baseline_value,
                                   value=baseline_value * self.baseline_factor)

    def to_dict(self):
        """The plan form: the expression, or an object when ``abort_on_fail`` is set."""
        return {"expr": self.expr, "abort_on_fail": True} if self.abort_on_fail else self.expr

    def passes(self, actual):
        """True when ``actual`` (a number, or ``None`` for no data) meets the threshold."""
        return actual is not None and OPERATORS[self.op](actual, self.value)


def _tokens(text):
    tokens = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            column = position + len(text[position:]) - len(text[position:].lstrip()) + 1
            raise ThresholdError(f"unexpected {text[column - 1]!r}", column)
        kind = match.lastgroup
        start = match.start(kind)
        tokens.append((kind, match.group(kind), start + 1))
        position = match.end()
    return tokens


def _unit(kind, key, unit, column):
    """The factor that turns a value with ``unit`` into the metric's own unit."""
    if not unit:
        return 1.0
    if kind == "histogram" and key.endswith("_us"):
        if unit in TIME_UNITS:
            return TIME_UNITS[unit]
        raise ThresholdError(f"{key} is in microseconds: use us, ms or s, not {unit!r}", column)
    if unit == "%" and (kind == ERROR_RATE or key.endswith("_percent")):
        return 1.0
    allowed = "%" if kind == ERROR_RATE or key.endswith("_percent") else "no unit"
    raise ThresholdError(f"{key} takes {allowed}, not {unit!r}", column)


def _metric(name, stat_token):
    """``(kind, key, stat, percentile)`` of a metric and its statistic token (or ``None``)."""
    stat, stat_column = (stat_token[1], stat_token[2]) if stat_token else (None, None)
    if name == ERROR_RATE:
        if stat is not None:
            raise ThresholdError("error_rate takes no statistic: write 'error_rate < 1%'", stat_column)
        return ERROR_RATE, ERROR_RATE, "value", 0.0
    if name.endswith("_us") or name.endswith("_percent"):
        if stat is None:
            raise ThresholdError(f"expected a statistic after {name}: min, mean, max, stddev or "
                                 f"pNN (p99, p99.9)", None)
        found = _PERCENTILE.fullmatch(stat)
        if found:
            percentile = float(found.group(1))
            if not 0 < percentile <= 100:
                raise ThresholdError("a percentile is from p0.1 to p100", stat_column)
            return "histogram", name, "percentile", percentile
        if stat in HISTOGRAM_STATS:
            return "histogram", name, stat, 0.0
        raise ThresholdError(f"{stat!r} is not a histogram statistic: use min, mean, max, "
                             f"stddev or pNN (p99, p99.9)", stat_column)
    if name.endswith("_per_second"):
        base = name[:-len("_per_second")]
        if stat not in RATE_STATS:
            raise ThresholdError(f"{name} takes mean (the sustain phase's rate) or max/peak (the "
                                 f"busiest second)", stat_column)
        return "counter", base, RATE_STATS[stat], 0.0
    base = name[:-len("_count")] if name.endswith("_count") else name
    if stat not in COUNTER_STATS:
        hint = " (histograms are named *_us or cpu_percent)" if stat and (
            stat in HISTOGRAM_STATS or _PERCENTILE.fullmatch(stat)) else ""
        raise ThresholdError(f"a counter takes count, rate or peak{hint}", stat_column)
    return "counter", base, stat, 0.0


def _metric_first(tokens):
    """``tokens`` with a metric name that starts with digits (``2fa_us``, ``404``: a script's
    key may) read as one word: the tokenizer reads digits as a number, but only a metric comes first."""
    kind, text, column = tokens[0]
    if kind == "number" and text.isdigit():
        if len(tokens) > 1 and tokens[1][0] == "word" and tokens[1][2] == column + len(text):
            return [("word", text + tokens[1][1], column), *tokens[2:]]
        return [("word", text, column), *tokens[1:]]
    return tokens


def parse(expr, abort_on_fail=False):
    """The ``Threshold`` of ``expr``; raises ``ThresholdError`` naming the column."""
    if not isinstance(expr, str) or not expr.strip():
        raise ThresholdError("must be an expression like 'headers_us p99 < 200ms'", 1)
    if len(expr) > MAX_EXPRESSION:
        raise ThresholdError(f"must be at most {MAX_EXPRESSION} characters", MAX_EXPRESSION + 1)
    tokens = _metric_first(_tokens(expr))
    end = len(expr.rstrip()) + 1
    kind, name, column = tokens[0]
    if kind != "word" or not _METRIC.fullmatch(name):
        raise ThresholdError("expected a metric name (headers_us, response, error_rate)", column)
    rest = tokens[1:]
    stat_token = rest.pop(0) if rest and rest[0][0] == "word" else None
    try:
        metric_kind, key, stat, percentile = _metric(name, stat_token)
    except ThresholdError as exc:
        raise ThresholdError(exc.message, exc.column or (tokens[1][2] if len(tokens) > 1 else end)) \
            from None
    if not rest or rest[0][0] != "op":
        raise ThresholdError(f"expected an operator ({' '.join(OPERATORS)})",
                             rest[0][2] if rest else end)
    op = rest.pop(0)[1]
    if rest and rest[0][:2] == ("word", BASELINE):
        factor = _baseline_factor(rest[1:], end)
        return Threshold(expr=" ".join(expr.split()), kind=metric_kind, key=key, stat=stat,
                         percentile=percentile, op=op, value=None, abort_on_fail=abort_on_fail,
                         baseline_factor=factor)
    if not rest or rest[0][0] != "number":
        raise ThresholdError("expected a number or 'baseline'", rest[0][2] if rest else end)
    _, number, number_column = rest.pop(0)
    unit = ""
    unit_column = number_column + len(number)
    if rest and rest[0][0] == "word" and rest[0][2] == unit_column:
        unit = rest.pop(0)[1]
    if rest:
        raise ThresholdError("unexpected text after the value", rest[0][2])
    value = float(number) * _unit(metric_kind, key, unit, unit_column)
    return Threshold(expr=" ".join(expr.split()), kind=metric_kind, key=key, stat=stat,
                     percentile=percentile, op=op, value=value, abort_on_fail=abort_on_fail)


def _baseline_factor(rest, end):
    """The factor of ``baseline * <factor>`` from the tokens after ``baseline`` (1 when none)."""
    if not rest:
        return 1.0
    if rest[0][0] != "times":
        raise ThresholdError("expected '* <factor>' after baseline (baseline * 1.10)", rest[0][2])
    if len(rest) < 2 or rest[1][0] != "number":
        raise ThresholdError("expected a factor after '*' (baseline * 1.10)", rest[1][2] if len(rest) > 1 else end)
    if len(rest) > 2:
        raise ThresholdError("unexpected text after the factor (the baseline's own unit applies)", rest[2][2])
    factor = float(rest[1][1])
    if factor <= 0:
        raise ThresholdError("the factor must be above 0", rest[1][2])
    return factor


def parse_plan_thresholds(value):
    """The plan's ``thresholds`` list as ``Threshold`` objects.

    Raises ``ThresholdError`` with an ``index`` attribute (and ``field``:
    ``thresholds[i]`` or ``thresholds[i].expr``) for the first bad entry.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        error = ThresholdError("must be a list of expressions", None)
        error.field = "thresholds"
        raise error
    result = []
    for index, item in enumerate(value):
        field = f"thresholds[{index}]"
        abort_on_fail = False
        expr = item
        if isinstance(item, dict):
            unknown = set(item) - {"expr", "abort_on_fail"}
            if unknown:
                error = ThresholdError("unknown field", None)
                error.field = f"{field}.{sorted(unknown)[0]}"
                raise error
            abort_on_fail = item.get("abort_on_fail", False)
            if not isinstance(abort_on_fail, bool):
                error = ThresholdError("must be true or false", None)
                error.field = f"{field}.abort_on_fail"
                raise error
            expr = item.get("expr")
            field += ".expr"
        try:
            result.append(parse(expr, abort_on_fail))
        except ThresholdError as exc:
            exc.field = field
            raise
    return tuple(result)


def error_rate_percent(counter_totals):
    """``100 * errors / (responses + receives + errors)`` of ``{counter base name: total}``.

    Errors are every counter whose name ends in ``_error`` except the hosts' TCP
    retransmits (other traffic of the machine counts there too); 0 when nothing
    was counted.
    """
    errors = sum(total for name, total in counter_totals.items()
                 if name.endswith("_error") and name not in HOST_WARNING_METRICS)
    operations = counter_totals.get("response", 0) + counter_totals.get("receive", 0) + errors
    return 100.0 * errors / operations if operations else 0.0


def observe(threshold, histograms, counters, error_rate):
    """The value ``threshold`` compares: from ``histograms`` (name -> ``Histogram``),
    ``counters`` (base name -> ``{"total", "rate", "peak"}``) or ``error_rate``.

    ``None`` when a histogram has no values; an absent counter counts 0.
    """
    if threshold.kind == ERROR_RATE:
        return error_rate
    if threshold.kind == "counter":
        counter = counters.get(threshold.key) or {}
        return counter.get("total" if threshold.stat == "count" else threshold.stat, 0)
    histogram = histograms.get(threshold.key)
    if histogram is None or not histogram.total_count:
        return None
    if threshold.stat == "percentile":
        return histogram.value_at_percentile(threshold.percentile)
    return getattr(histogram, threshold.stat)
