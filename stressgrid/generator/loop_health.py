"""How well a worker's event loop turns, and where a script holds it when it does not.

- ``measure_loop_lag``: a task that sleeps ``period_s`` over and over and records
  how late it wakes up in the histogram ``worker_loop_lag_us``; every wake-up is
  also the loop's heartbeat for the watchdog.
- ``LoopWatchdog``: a thread that checks the heartbeat; when the loop has not
  turned for ``stall_s`` it looks at the main thread's current frame
  (``sys._current_frames``), finds the innermost script frame and reports the
  stall once, with that line. A device that spins or calls ``time.sleep``
  holds the loop, but not this thread: Python hands the interpreter over to it
  every few milliseconds.
- ``script_line``: ``line 3: while True:`` for the innermost script frame of a
  stack (a thread's or a suspended device's).
"""
import asyncio
import sys
import threading
import time

from stressgrid.plan.script import SCRIPT_FILENAME

LAG_PERIOD_S = 0.1
STALL_S = 1.0


def script_line(frames, source_lines_of):
    """``line N: <source>`` for the first script frame of ``frames`` (innermost first), or ``None``.

    ``source_lines_of(globals)`` gives the source lines of the script a frame runs.
    """
    for frame in frames:
        if frame.f_code.co_filename != SCRIPT_FILENAME:
            continue
        number = frame.f_lineno
        lines = source_lines_of(frame.f_globals) or ()
        source = lines[number - 1].strip() if 0 < number <= len(lines) else ""
        return f"line {number}: {source}" if source else f"line {number}"
    return None


def outward(frame):
    """A thread's frames from ``frame`` outward (innermost first)."""
    while frame is not None:
        yield frame
        frame = frame.f_back


def task_line(task, source_lines_of):
    """Where a suspended device's script waits (``script_line``), or ``None``: ``task`` is
    its ``DeviceRunner`` or its task (``get_coro()``)."""
    frames = []
    awaiting = task.get_coro()
    while awaiting is not None:  # the chain of coroutines each awaits the next
        frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "gi_yieldfrom", None)
    return script_line(reversed(frames), source_lines_of)


class LoopWatchdog:
    """A thread that reports, once per stall, when the loop has not turned for ``stall_s``.

    ``open_reporter()`` is called in the watchdog's thread and returns
    ``(report, close)``: ``report(stalled_s, line)`` sends the stall from that
    thread (``line`` may be ``None``), ``close()`` releases what it holds.
    """

    def __init__(self, open_reporter, source_lines_of, stall_s=STALL_S, check_s=LAG_PERIOD_S,
                 clock=time.monotonic):
        self._open_reporter = open_reporter
        self._source_lines_of = source_lines_of
        self.stall_s = stall_s
        self.check_s = check_s
        self._clock = clock
        self.last_tick = clock()
        self._stopped = threading.Event()
        self._thread = None

    def tick(self):
        """The loop turned (called on the loop)."""
        self.last_tick = self._clock()

    def start(self):
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self):
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self):
        report, close = self._open_reporter()
        main = threading.main_thread().ident
        reported_tick = None
        try:
            while not self._stopped.wait(self.check_s):
                tick = self.last_tick
                stalled = self._clock() - tick
                if stalled < self.stall_s or tick == reported_tick:
                    continue
                reported_tick = tick
                line = script_line(outward(sys._current_frames().get(main)), self._source_lines_of)
                report(stalled, line)
        finally:
            close()


async def measure_loop_lag(histogram, watchdog, period_s=LAG_PERIOD_S):
    """Record how late the loop wakes up from a ``period_s`` sleep, forever; ticks ``watchdog``."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period_s
        await asyncio.sleep(period_s)
        histogram.record(max(1, round((loop.time() - due) * 1_000_000)))
        watchdog.tick()
