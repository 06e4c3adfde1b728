"""The stops each worker owes the agent, and when each is overdue.

A worker confirms a ``StopCohort`` by sending it back and an ``Abort`` with
``RunStopped``. A worker that has not confirmed one within ``timeout_s`` is
held by something it cannot leave (a device in a CPU loop, a script that
catches its cancellation): the agent kills it. A worker whose devices keep
ending (a large cohort stopping) makes progress: every drop of its active
devices gives its stops ``timeout_s`` more. Sans-IO: time is a parameter.
"""


def stop_key(message):
    """What a ``StopCohort``, an ``Abort`` or a ``RunStopped`` stops: ``(run_id, cohort_id or None)``."""
    return message.run_id, getattr(message, "cohort_id", None)


def describe_stop(key):
    run_id, cohort_id = key
    if cohort_id is None:
        return f"abort of run {run_id!r}"
    return f"stop_cohort {cohort_id!r} of run {run_id!r}"


class StopDeadlines:
    """Per worker index, the stops sent to it and not yet confirmed, with their deadlines."""

    def __init__(self, timeout_s):
        self.timeout_s = timeout_s
        self._pending = {}  # worker index -> {stop key: deadline}

    def expect(self, index, key, now):
        self._pending.setdefault(index, {}).setdefault(key, now + self.timeout_s)

    def confirmed(self, index, key):
        pending = self._pending.get(index)
        if pending is not None:
            pending.pop(key, None)
            if not pending:
                del self._pending[index]

    def progressed(self, index, now):
        """Worker ``index`` is getting on with its stops: each is due ``timeout_s`` from ``now``."""
        pending = self._pending.get(index)
        if pending is not None:
            for key in pending:
                pending[key] = max(pending[key], now + self.timeout_s)

    def forget(self, index):
        """Worker ``index`` ended: it owes nothing any more."""
        self._pending.pop(index, None)

    def overdue(self, now):
        """``(index, key)`` of the oldest overdue stop of every worker that has one."""
        late = []
        for index, pending in self._pending.items():
            key, deadline = min(pending.items(), key=lambda item: item[1])
            if deadline <= now:
                late.append((index, key))
        return late

    def next_due(self):
        """The earliest deadline, or ``None``."""
        deadlines = [deadline for pending in self._pending.values() for deadline in pending.values()]
        return min(deadlines) if deadlines else None
