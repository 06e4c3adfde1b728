"""Report writers behind one small interface, run on their own thread.

A ``Writer`` receives, in order, for each run: ``start``, any number of
``event``, ``second``, ``interval`` and ``checkpoint`` calls, then ``finish``. The ``WriterPipeline``
calls every writer from a single thread fed by a queue, so a slow
destination (a CloudWatch call, packing an archive) never holds up the
coordinator's socket thread. A writer that raises is logged and its error
recorded in the run's report; the other writers carry on.
"""
import dataclasses
import logging
import queue
import threading
import time

from stressgrid.metrics import encode_histograms
from stressgrid.plan.result import dropped_iterations, run_result

log = logging.getLogger(__name__)

# The note of a run the coordinator stopped (or died) during.
INTERRUPTED_NOTE = "the coordinator stopped during the run"


@dataclasses.dataclass
class RunInfo:
    """What writers know about a run from its start."""

    id: str
    name: str
    plan: dict
    started_at: float
    report_interval_ms: int
    writer_errors: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FinalReport:
    """A run's end: its final state and everything it added up to."""

    state: str
    started_at: float
    finished_at: float
    devices_requested: int
    devices_started: int
    generators: dict
    events: list
    totals: object  # aggregate.RunTotals
    note: str = ""
    summary: dict = None  # summary.summarize() of the whole run
    verdict: dict = None  # verdict.Verdict.to_dict(): the thresholds' final states

    def to_dict(self, writer_errors=()):
        """The run summary as JSON data (``summary.json`` and the API)."""
        result = {
            "state": self.state, "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_s": round(self.finished_at - self.started_at, 3),
            "devices_requested": self.devices_requested, "devices_started": self.devices_started,
            "generators": dict(self.generators), "events": list(self.events), "note": self.note,
        }
        result.update(self.totals.to_dict())
        result["summary"] = self.summary
        result["verdict"] = self.verdict
        result["result"] = run_result(self.state, (self.verdict or {}).get("outcome"),
                                      result.get("errors"), dropped_iterations(result)).value
        if writer_errors:
            result["writer_errors"] = list(writer_errors)
        return result


class Writer:
    """A destination for run reports. Every method runs on the writer thread.

    Subclasses override what they need; ``finish`` may return a dict that is
    merged into the result handed to the pipeline's ``on_finished`` (the
    archive writer returns ``{"archive": file name}``).
    """

    name = "writer"

    def start(self, run):
        """A run began (``run``: ``RunInfo``)."""

    def event(self, run, event):
        """Something happened during the run (a dict with time, kind, message)."""

    def second(self, run, telemetry):
        """A second of the run closed (``telemetry``: ``TelemetryAggregator.tick``'s dict)."""

    def interval(self, run, report):
        """A report interval closed (``report``: ``aggregate.IntervalReport``)."""

    def checkpoint(self, run, report_json):
        """The report the run gets if the coordinator dies now (``summary.json``'s text)."""

    def finish(self, run, final):
        """The run ended (its last, partial interval was already passed to ``interval``)."""
        return None

    def close(self):
        """The coordinator is stopping."""


class WriterPipeline:
    """Calls every writer from one thread, in submission order.

    ``on_finished(run, result)`` is called on the writer thread after every
    writer's ``finish``; ``result`` holds the final report dict
    (``"summary"``) and whatever the writers returned.
    """

    def __init__(self, writers, on_finished=None):
        self.writers = list(writers)
        self.on_finished = on_finished
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="stressgrid-writers", daemon=True)
        self._thread.start()

    def start(self, run):
        """Queue the start of ``run`` for every writer."""
        self._queue.put(("start", run, lambda writer: writer.start(run)))

    def event(self, run, event):
        """Queue a run event for every writer."""
        self._queue.put(("event", run, lambda writer: writer.event(run, event)))

    def second(self, run, telemetry):
        """Queue a closed second's telemetry for every writer."""
        self._queue.put(("second", run, lambda writer: writer.second(run, telemetry)))

    def interval(self, run, report):
        """Queue a closed report interval for every writer."""
        if report is not None:
            self._queue.put(("interval", run, lambda writer: writer.interval(run, report)))

    def checkpoint(self, run, report_json):
        """Queue the run's report so far, for a coordinator that dies before its end."""
        self._queue.put(("checkpoint", run, lambda writer: writer.checkpoint(run, report_json)))

    def finish(self, run, last, final):
        """Queue the run's last partial interval (or ``None``) and its final report."""
        self._queue.put(("finish", run, lambda _: self._finish(run, last, final)))

    def close(self, timeout=60.0):
        """Finish everything queued, then stop the thread and close the writers."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self):
        while True:
            item = self._queue.get()
            if item is None:
                break
            stage, run, call = item
            try:
                if stage == "finish":
                    call(None)
                else:
                    for writer in self.writers:
                        self._call(writer, stage, run, call)
            except Exception:  # noqa: BLE001 - the writer thread must survive anything
                log.exception("writer pipeline failed on %s", stage)
        for writer in self.writers:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                log.exception("closing writer %s failed", writer.name)

    def _call(self, writer, stage, run, call):
        """``call(writer)``, the writer's ``stage``; a failure is logged and kept with the run."""
        started = time.monotonic()
        try:
            return call(writer)
        except Exception as exc:  # noqa: BLE001 - one writer's failure must not stop the others
            log.exception("%s writer failed in %s for run %s", writer.name, stage, run.id)
            run.writer_errors.append({"writer": writer.name, "stage": stage,
                                      "error": f"{type(exc).__name__}: {exc}"})
            return None
        finally:
            elapsed = time.monotonic() - started
            if elapsed > 5:
                log.warning("%s writer took %.1f s in %s", writer.name, elapsed, stage)

    def _finish(self, run, last, final):
        result = {}
        if last is not None:
            for writer in self.writers:
                self._call(writer, "interval", run, lambda writer: writer.interval(run, last))
        for writer in self.writers:
            returned = self._call(writer, "finish", run, lambda writer: writer.finish(run, final))
            if returned:
                result.update(returned)
        result["summary"] = final.to_dict(run.writer_errors)
        result["histograms"] = encode_histograms(final.totals.histograms)
        if self.on_finished is not None:
            try:
                self.on_finished(run, result)
            except Exception:  # noqa: BLE001
                log.exception("recording the end of run %s failed", run.id)
