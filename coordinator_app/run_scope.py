"""Which run a generator's message belongs to, and the count of those of other runs.

Telemetry, events and ``run_stopped`` carry a run id (``""``: the host works
for no run). Only the active run's data is merged into it; data of any other
run is counted and said in a ``stale_telemetry`` event at most once per
``STALE_EVENT_INTERVAL_S``. Pure bookkeeping: time is a parameter.
"""
import enum

STALE_EVENT_INTERVAL_S = 10.0


class Scope(enum.Enum):
    ACTIVE = "active"  # of the active run: merged into it
    IDLE = "idle"  # of no run: a host at rest; shown in the live view only while no run is active
    STALE = "stale"  # of a run that is not the active one: never merged


def scope_of(run_id, active_run_id):
    """The ``Scope`` of a message of ``run_id`` (``active_run_id``: ``None`` when no run is active)."""
    if run_id == "":
        return Scope.IDLE
    return Scope.ACTIVE if run_id == active_run_id else Scope.STALE


def merges(scope, run_active):
    """True when a message of ``scope`` is merged (``run_active``: a run is in progress)."""
    return scope is Scope.ACTIVE or (scope is Scope.IDLE and not run_active)


class StaleMessages:
    """Messages of other runs: counted, and said at most once per ``interval_s``."""

    def __init__(self, interval_s=STALE_EVENT_INTERVAL_S):
        self.interval_s = interval_s
        self.total = 0
        self._unsaid = 0
        self._latest = None
        self._quiet_until = None

    def note(self, generator_id, run_id, now):
        """Count one; returns the event text to record now, or ``None`` (said recently)."""
        self.total += 1
        self._unsaid += 1
        self._latest = (generator_id, run_id)
        if self._quiet_until is not None and now < self._quiet_until:
            return None
        return self._say(now)

    def flush(self, now):
        """The text for what was counted but not yet said, or ``None``."""
        return self._say(now) if self._unsaid else None

    def start_run(self):
        """What came before a run is not said in it."""
        self._unsaid = 0
        self._quiet_until = None

    def _say(self, now):
        generator_id, run_id = self._latest
        text = (f"{self._unsaid} message(s) of another run ignored (latest: run {run_id!r} "
                f"from {generator_id})")
        self._unsaid = 0
        self._quiet_until = now + self.interval_s
        return text
