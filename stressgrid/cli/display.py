"""Live telemetry and the final summary on stderr: redrawn in place on a terminal, plain
lines otherwise."""
import os
import shutil
import sys

from stressgrid.plan.arrivals import DROPPED_ITERATION_COUNTER, ITERATION_COUNTER
from stressgrid.plan.constants import (CHECK_PREFIX, CPU_WARNING_PERCENT, GENERATOR_HISTOGRAMS, LOOP_LAG_WARNING_US,
                                       REQUEST_GROUP_PREFIX, STATUS_CLASS_COUNTERS, WARNING_STATUS_COUNTERS)
from stressgrid.formatting import format_bytes, format_duration, format_rate, format_us
from stressgrid.plan.result import error_name, is_host_error

RED, YELLOW, BOLD, DIM, RESET = "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[2m", "\x1b[0m"
QUIET_EVENTS = frozenset({"run_started", "run_done", "generator_registered"})


def counter_name(name):
    return name[:-len("_count")] if name.endswith("_count") else name


def live_counter(name):
    """A counter the live view lists: not the host's network bytes, not an error (listed
    apart), not a check or a named request's (the summary has their tables), nor a status
    class that is no warning (``response`` holds them)."""
    base = counter_name(name)
    if name.startswith(("network_", CHECK_PREFIX, REQUEST_GROUP_PREFIX)) or "_error" in name:
        return False
    return base not in STATUS_CLASS_COUNTERS or base in WARNING_STATUS_COUNTERS


def _wrap_values(values, width, separator="   "):
    """``values`` joined by ``separator`` in rows of at most ``width`` characters, each row
    breaking between two values (a value wider than a row alone is cut)."""
    rows = []
    for value in map(str, values):
        if rows and len(rows[-1]) + len(separator) + len(value) <= width:
            rows[-1] += separator + value
        else:
            rows.append(value[:width])
    return rows


class Display:
    """Live telemetry on stderr: redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, stream=None, quiet=False, color=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if color is None:
            color = self.tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.color = color
        self.quiet = quiet
        encoding = (getattr(self.stream, "encoding", "") or "").lower().replace("-", "")
        self.micro = "\u00b5s" if encoding == "utf8" else "us"
        self.drawn = 0  # lines of the live block currently on screen
        self.seen_events = set()
        self.last_line = None  # (telemetry time, phase) of the last plain line

    # -- output primitives -------------------------------------------------------------

    def _paint(self, text, style):
        return f"{style}{text}{RESET}" if self.color and style else text

    def _clear(self):
        if self.drawn:
            self.stream.write(f"\r\x1b[{self.drawn}A\x1b[J")
            self.drawn = 0

    def message(self, text, style=None):
        """A line that stays (above the live block on a terminal)."""
        self._clear()
        self.stream.write(self._paint(text, style) + "\n")
        self.stream.flush()

    def error(self, text):
        self.message(text, RED)

    def close(self):
        self._clear()
        self.stream.flush()

    # -- telemetry ---------------------------------------------------------------------

    def update(self, state, run_id):
        """Show one published coordinator state for run ``run_id``."""
        run = state.get("run") or {}
        if run.get("id") != run_id:
            return
        telemetry = state.get("telemetry") or {}
        if (telemetry.get("time") or 0) < (run.get("started_at") or 0):
            # The second before the run started: nothing of it belongs to this run.
            telemetry = {"time": telemetry.get("time"),
                         "generator_count": telemetry.get("generator_count", 0)}
        self._events(state, run)
        if self.quiet:
            return
        if self.tty:
            self._draw(self._block(run, telemetry, state))
            return
        # Plain lines: one per second of telemetry (a phase change alone is an event line).
        key = (telemetry.get("time"), self._phase(run) if run.get("outcome") else None)
        if key != self.last_line:
            self.last_line = key
            self.stream.write(self._line(run, telemetry) + "\n")
            self.stream.flush()

    def _events(self, state, run):
        started = run.get("started_at") or 0
        for event in state.get("events") or ():
            key = (event.get("time"), event.get("kind"), event.get("message"))
            if key in self.seen_events or (event.get("time") or 0) < started:
                continue
            self.seen_events.add(key)
            if event.get("kind") in QUIET_EVENTS or (self.quiet and event.get("kind") == "phase"):
                continue
            at = event.get("elapsed_s")
            when = f"[{format_duration(at * 1000)}] " if at is not None else ""
            style = YELLOW if event.get("kind") in ("generator_cpu_high", "generator_loop_lag_high") else RED \
                if event.get("kind") in ("generator_lost", "cohort_skipped", "cohort_not_sent") \
                else None
            self.message(f"{when}{event.get('kind')}: {event.get('message')}", style)

    def _phase(self, run):
        state = run.get("state", "?")
        if state == "ending":
            return "ending, collecting the generators' last metrics"
        if state == "finishing":
            return f"{run.get('outcome')}, writing the report"
        return state

    def _line(self, run, telemetry):
        parts = [f"[{format_duration(run.get('elapsed_ms'))}] {self._phase(run)}, "
                 f"{format_duration(run.get('remaining_ms'))} left",
                 f"generators {telemetry.get('generator_count', 0)}",
                 f"devices {telemetry.get('active_device_number', 0)}/{run.get('devices', '?')}",
                 f"cpu {telemetry.get('max_cpu_percent', 0):.0f}%"
                 + (f" (over {CPU_WARNING_PERCENT}%: results suspect)" if telemetry.get("cpu_warning") else ""),
                 f"loop lag p99 {format_us(telemetry.get('loop_lag_p99_us', 0), self.micro)}"
                 + (f" (over {format_us(LOOP_LAG_WARNING_US, self.micro)}: results suspect)"
                    if telemetry.get("loop_lag_warning") else "")]
        arrival = self._arrival_rate(run, telemetry)
        if arrival:
            parts.append(arrival)
        rates = []
        for name, value in sorted((telemetry.get("counters") or {}).items()):
            if not live_counter(name):
                continue
            rates.append(f"{counter_name(name)} {format_rate(value.get('per_second', 0))}/s")
        if rates:
            parts.append(" ".join(rates))
        for name, h in sorted((telemetry.get("histograms") or {}).items()):
            if name in GENERATOR_HISTOGRAMS:
                continue
            parts.append(f"{name} p50 {format_us(h.get('p50'), self.micro)} "
                         f"p99 {format_us(h.get('p99'), self.micro)}")
        errors = sorted((telemetry.get("errors") or {}).items())
        device_errors = [(n, e) for n, e in errors if not is_host_error(n)]
        if device_errors:
            parts.append("errors " + " ".join(f"{error_name(n)}={e.get('count', 0)}"
                                              for n, e in device_errors))
        parts.extend(f"{error_name(n)} {e.get('count', 0)}" for n, e in errors if is_host_error(n))
        return " | ".join(parts)

    @staticmethod
    def _arrival_rate(run, telemetry):
        """An open-model run's achieved iteration rate against its target, or ``""``."""
        target = run.get("target_rate")
        if target is None:
            return ""
        counters = telemetry.get("counters") or {}
        achieved = (counters.get(ITERATION_COUNTER) or {}).get("per_second", 0)
        dropped = (counters.get(DROPPED_ITERATION_COUNTER) or {}).get("per_second", 0)
        return (f"iterations {format_rate(achieved)}/s of {format_rate(target)}/s"
                + (f", dropped {format_rate(dropped)}/s" if dropped else ""))

    def _block(self, run, telemetry, state):
        """The live block: ``(text, style)`` lines; a text given as a tuple of values is
        wrapped between values to the terminal's width, a plain text is cut at it."""
        lines = []
        lines.append(((run.get("id"), self._phase(run),
                       f"{format_duration(run.get('remaining_ms'))} left",
                       f"(elapsed {format_duration(run.get('elapsed_ms'))})"), BOLD))
        counters = telemetry.get("counters") or {}
        rx = (counters.get("network_rx_bytes") or {}).get("per_second", 0)
        tx = (counters.get("network_tx_bytes") or {}).get("per_second", 0)
        cpu = telemetry.get("max_cpu_percent", 0)
        lines.append(((f"generators {telemetry.get('generator_count', 0)}",
                       f"devices {telemetry.get('active_device_number', 0):,}/"
                       f"{run.get('devices', 0):,}",
                       f"network rx {format_bytes(rx)}/s tx {format_bytes(tx)}/s",
                       f"generator cpu {cpu:.0f}%",
                       f"loop lag p99 {format_us(telemetry.get('loop_lag_p99_us', 0), self.micro)}"), None))
        arrival = self._arrival_rate(run, telemetry)
        if arrival:
            lines.append(("  " + arrival, None))
        if telemetry.get("cpu_warning"):
            lines.append((f"  a generator is over {CPU_WARNING_PERCENT}% CPU: results may be limited by the generator",
                          YELLOW))
        if telemetry.get("loop_lag_warning"):
            lines.append((f"  workers' event loops lag over {format_us(LOOP_LAG_WARNING_US, self.micro)}: "
                          "the latencies include the generator's delay", YELLOW))
        rows = [(counter_name(name), value) for name, value in sorted(counters.items()) if live_counter(name)]
        if rows:
            lines.append((f"  {'counter':<24}{'per second':>12}{'total':>14}", DIM))
            for name, value in rows[:12]:
                lines.append((f"  {name:<24}{format_rate(value.get('per_second', 0)):>12}"
                              f"{value.get('total', 0):>14,}", None))
            if len(rows) > 12:
                lines.append((f"  ... {len(rows) - 12} more counters", DIM))
        histograms = [(n, h) for n, h in sorted((telemetry.get("histograms") or {}).items())
                      if n not in GENERATOR_HISTOGRAMS]
        if histograms:
            lines.append((f"  {'histogram':<24}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}"
                          f"{'count/s':>10}", DIM))
            for name, h in histograms[:12]:
                lines.append((f"  {name:<24}" + "".join(
                    f"{format_us(h.get(k), self.micro):>10}" for k in ("p50", "p90", "p99", "max"))
                    + f"{h.get('count', 0):>10,}", None))
        errors = sorted((telemetry.get("errors") or {}).items())
        if errors:
            lines.append(("  errors", RED if any(not is_host_error(n) for n, _ in errors) else YELLOW))
            for name, e in errors:
                rate = (counters.get(name) or {}).get("per_second")
                rate = f" (+{format_rate(rate)}/s)" if rate else ""
                first = f"  {e['line']}" if e.get("line") else ""
                lines.append((f"  {error_name(name):<24}{e.get('count', 0):>12,}{rate}{first}",
                              YELLOW if is_host_error(name) else RED))
        return lines

    def _draw(self, lines):
        # One column spare: a line as wide as the terminal would wrap by itself on some.
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        rows = []
        for text, style in lines:
            rows.extend((row, style) for row in (
                _wrap_values(text, width) if isinstance(text, tuple) else [text[:width]]))
        out = [f"\r\x1b[{self.drawn}A\x1b[J"] if self.drawn else []
        out.extend(self._paint(row, style) + "\n" for row, style in rows)
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = len(rows)
