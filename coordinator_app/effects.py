"""What the run scheduler asks its caller to persist and to write, as typed values.

The scheduler does no I/O: it returns these in its ``Outbox`` (``store`` and
``writes``), and the service applies each one, in order, to the run store
(``apply(store)``) or the writer pipeline (``apply(pipeline)``). A test reads
them as plain values.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class InsertRun:
    """A new run in the store, in its first state."""

    run_id: str
    name: str
    state: str
    created_at: float
    devices: int
    plan: dict

    def apply(self, store):
        store.insert(self.run_id, self.name, self.state, self.created_at, self.devices, self.plan)


@dataclasses.dataclass(frozen=True)
class SetRunState:
    """The run entered ``state`` (a phase)."""

    run_id: str
    state: str

    def apply(self, store):
        store.set_state(self.run_id, self.state)


@dataclasses.dataclass(frozen=True)
class FinishRun:
    """The run's report is written: its final state, summary and archive."""

    run_id: str
    state: str
    finished_at: float
    archive: str
    summary: dict
    note: str
    histograms: dict = None  # stressgrid.metrics.encode_histograms() of the whole run
    overview: dict = None  # overview.overview() of the whole run

    def apply(self, store):
        store.finish(self.run_id, self.state, self.finished_at, self.archive, self.summary, self.note,
                     self.histograms, self.overview)


@dataclasses.dataclass(frozen=True)
class DeleteRun:
    """A finished run is forgotten."""

    run_id: str

    def apply(self, store):
        store.delete(self.run_id)


@dataclasses.dataclass(frozen=True)
class WriteStart:
    """Every writer opens the run."""

    info: object  # writers.RunInfo

    def apply(self, pipeline):
        pipeline.start(self.info)


@dataclasses.dataclass(frozen=True)
class WriteEvent:
    """A run event, for the writers that keep them."""

    info: object
    event: dict

    def apply(self, pipeline):
        pipeline.event(self.info, self.event)


@dataclasses.dataclass(frozen=True)
class WriteSecond:
    """A closed second's telemetry (the report's charts)."""

    info: object
    telemetry: dict

    def apply(self, pipeline):
        pipeline.second(self.info, self.telemetry)


@dataclasses.dataclass(frozen=True)
class WriteInterval:
    """A closed report interval."""

    info: object
    report: object  # aggregate.IntervalReport

    def apply(self, pipeline):
        pipeline.interval(self.info, self.report)


@dataclasses.dataclass(frozen=True)
class WriteCheckpoint:
    """The run's report so far, for a coordinator that dies before the run ends."""

    info: object
    report_json: str

    def apply(self, pipeline):
        pipeline.checkpoint(self.info, self.report_json)


@dataclasses.dataclass(frozen=True)
class WriteFinish:
    """The run's last partial interval (or ``None``) and its final totals."""

    info: object
    last: object
    final: object  # aggregate.RunTotals

    def apply(self, pipeline):
        pipeline.finish(self.info, self.last, self.final)
