"""Run history in SQLite under the data directory (survives coordinator restarts).

Each call opens its own short-lived connection, so any thread may use the
store; a lock keeps writers from racing each other in this process. A
finished run keeps its whole-run histograms exactly (``Histogram.encode``'s
form, base64 in JSON), so a later run can be compared with it at any
percentile.
"""
import contextlib
import json
import sqlite3
import threading

from stressgrid.metrics import decode_histograms
from stressgrid.plan.constants import FINAL_STATES
from stressgrid.plan.result import RunResult

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
    note        TEXT NOT NULL DEFAULT '',
    histograms  TEXT,
    overview    TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
"""
# Columns added after the first schema: (name, declaration) for ALTER TABLE on older files.
ADDED_COLUMNS = (("histograms", "TEXT"), ("overview", "TEXT"))


class RunStore:
    """CRUD of run records; rows come back as plain dicts (``plan``/``summary`` decoded)."""

    def __init__(self, path):
        self.path = str(path)
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(SCHEMA)
            present = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
            for column, declaration in ADDED_COLUMNS:
                if column not in present:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {declaration}")

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
        result.pop("histograms", None)
        result.pop("overview", None)
        result["plan"] = json.loads(result["plan"])
        result["summary"] = json.loads(result["summary"]) if result["summary"] else None
        return result

    def insert(self, run_id, name, state, created_at, devices, plan):
        """Record a new run."""
        with self._lock, self._connect() as conn:
            conn.execute("INSERT INTO runs (id, name, state, created_at, devices, plan) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (run_id, name, state, created_at, devices, json.dumps(plan)))

    def add_finished(self, run):
        """Record a run that finished elsewhere (``run_import.ImportedRun``); ``False`` when a run
        with its id is recorded already."""
        with self._lock, self._connect() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run.run_id,)).fetchone() is not None:
                return False
            conn.execute("INSERT INTO runs (id, name, state, created_at, finished_at, devices, plan, summary, "
                         "note, histograms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (run.run_id, run.name, run.state, run.started_at, run.finished_at, run.devices,
                          json.dumps(run.plan), json.dumps(run.summary), run.note,
                          json.dumps(run.histograms) if run.histograms else None))
        return True

    def exists(self, run_id):
        """True when a run with this id is recorded."""
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def set_state(self, run_id, state):
        """Record a run's current phase."""
        with self._lock, self._connect() as conn:
            conn.execute("UPDATE runs SET state = ? WHERE id = ?", (state, run_id))

    def finish(self, run_id, state, finished_at, archive, summary, note="", histograms=None, overview=None):
        """Record a run's end: final state, archive file name, summary, whole-run histograms
        (``encode_histograms``' form, or ``None`` when the run left none) and its overview
        (``overview.overview``'s dict)."""
        with self._lock, self._connect() as conn:
            conn.execute("UPDATE runs SET state = ?, finished_at = ?, archive = ?, summary = ?, "
                         "note = ?, histograms = ?, overview = ? WHERE id = ?",
                         (state, finished_at, archive, json.dumps(summary) if summary else None,
                          note, json.dumps(histograms) if histograms else None,
                          json.dumps(overview) if overview else None, run_id))

    def get(self, run_id):
        """One run with its plan and summary, or ``None``."""
        with self._connect() as conn:
            return self._row(conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())

    def histograms(self, run_id):
        """A finished run's whole-run histograms ``{name: Histogram}``, or ``None`` when it
        kept none (it ended before any value, or was recorded before they were kept)."""
        with self._connect() as conn:
            row = conn.execute("SELECT histograms FROM runs WHERE id = ?", (run_id,)).fetchone()
        return decode_histograms(json.loads(row["histograms"])) if row and row["histograms"] else None

    def overview(self, run_id):
        """A finished run's overview (``overview.overview``'s dict), or ``None``."""
        with self._connect() as conn:
            row = conn.execute("SELECT overview FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row["overview"]) if row and row["overview"] else None

    def last_passed(self, before=None):
        """The newest run whose result is ``passed`` (created before run ``before``, when
        given), with its plan and summary, or ``None``."""
        query = "SELECT * FROM runs WHERE json_extract(summary, '$.result') = ?"
        arguments = (RunResult.PASSED.value,)
        if before is not None:
            query += " AND created_at <= (SELECT created_at FROM runs WHERE id = ?) AND id != ?"
            arguments += (before, before)
        with self._connect() as conn:
            return self._row(conn.execute(query + " ORDER BY created_at DESC, id DESC LIMIT 1",
                                          arguments).fetchone())

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
