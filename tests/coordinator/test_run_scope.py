"""Which run a message belongs to, and how messages of other runs are counted and said."""
import pytest

from coordinator_app.run_scope import Scope, StaleMessages, merges, scope_of

pytestmark = pytest.mark.unit


def test_scopes():
    assert scope_of("run-1", "run-1") is Scope.ACTIVE
    assert scope_of("", "run-1") is Scope.IDLE and scope_of("", None) is Scope.IDLE
    assert scope_of("run-0", "run-1") is Scope.STALE and scope_of("run-0", None) is Scope.STALE
    assert merges(Scope.ACTIVE, True)
    assert merges(Scope.IDLE, False) and not merges(Scope.IDLE, True)
    assert not merges(Scope.STALE, True) and not merges(Scope.STALE, False)


def test_stale_messages_are_said_at_once_then_at_most_once_per_interval():
    stale = StaleMessages(interval_s=10.0)
    assert stale.note("g1", "old", now=100.0).startswith("1 message(s)")
    assert stale.note("g1", "old", now=101.0) is None
    assert stale.note("g2", "older", now=109.9) is None
    said = stale.note("g2", "older", now=110.0)
    assert said.startswith("3 message(s)") and "'older' from g2" in said
    assert stale.flush(now=111.0) is None
    stale.note("g1", "old", now=112.0)
    assert stale.flush(now=113.0).startswith("1 message(s)")
    assert stale.total == 5
    stale.note("g1", "old", now=114.0)
    stale.start_run()
    assert stale.flush(now=115.0) is None
    assert stale.note("g1", "old", now=115.0) is not None  # a new run hears of it at once
