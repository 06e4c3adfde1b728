"""Run history in SQLite under the data directory (survives coordinator restarts).

Each call opens its own short-lived connection, so any thread may use the
store; a lock keeps writers from racing each other in this process.
"""
import contextlib
import json
import sqlite3
import threading

from stressgrid.plan.constants import FINAL_STATES

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    finished_at REAL,
    devices     INTEGER NOT NULL,
    plan        TEXT NOT NULL,
    archive     TEXT,
    summary     TEXT,
    note        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
"""


class RunStore:
    """CRUD of run records; rows come back as plain dicts (``plan``/``summary`` decoded)."""

    def __init__(self, path):
        self.path = str(path)
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connect(self):
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    @staticmethod
    def _row(row):
        if row is None:
            return None
        result = dict(row)
        result["plan"] = json.loads(result["plan"])
        result["summary"] = json.loads(result["summary"]) if result["summary"] else None
        return result

    def insert(self, run_id, name, state, created_at, devices, plan):
        """Record a new run."""
        with self._lock, self._connect() as conn:
            conn.execute("INSERT INTO runs (id, name, state, created_at, devices, plan) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (run_id, name, state, created_at, devices, json.dumps(plan)))

    def exists(self, run_id):
        """True when a run with this id is recorded."""
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def set_state(self, run_id, state):
        """Record a run's current phase."""
        with self._lock, self._connect() as conn:
            conn.execute("UPDATE runs SET state = ? WHERE id = ?", (state, run_id))

    def finish(self, run_id, state, finished_at, archive, summary, note=""):
        """Record a run's end: final state, archive file name and summary."""
        with self._lock, self._connect() as conn:
            conn.execute("UPDATE runs SET state = ?, finished_at = ?, archive = ?, summary = ?, "
                         "note = ? WHERE id = ?",
                         (state, finished_at, archive, json.dumps(summary) if summary else None,
                          note, run_id))

    def get(self, run_id):
        """One run with its plan and summary, or ``None``."""
        with self._connect() as conn:
            return self._row(conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())

    def list(self, limit=1000):
        """Runs newest first, without their plans and summaries."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, name, state, created_at, finished_at, devices, archive, "
                                "note FROM runs ORDER BY created_at DESC, id DESC LIMIT ?",
                                (limit,)).fetchall()
        return [dict(row) for row in rows]

    def delete(self, run_id):
        """Remove a run record; returns it (or ``None`` if there was none)."""
        with self._lock, self._connect() as conn:
            row = self._row(conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())
            if row is not None:
                conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        return row

    def interrupted(self):
        """Runs that were in progress when the coordinator last stopped."""
        placeholders = ", ".join("?" for _ in FINAL_STATES)
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM runs WHERE state NOT IN ({placeholders})",
                                FINAL_STATES).fetchall()
        return [self._row(row) for row in rows]
