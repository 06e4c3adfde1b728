"""The CSV writer and the run's results archive.

While a run goes on, its files live in ``<data>/runs/<run id>/``:
``results.csv`` (rewritten whole at every interval, so it is always
complete and its header covers every key so far), ``plan.json``,
``events.jsonl`` (appended as things happen), and one HdrHistogram log per
histogram under ``hdr/``. When the run ends ``errors.json``,
``summary.json`` and ``histograms.json`` (the whole run's, exactly) are added and the directory is packed into
``<data>/results/<run id>.tar.gz`` as ``<run id>/...``. Every few seconds the
run's report so far goes to ``checkpoint.json``: a run cut short by a
coordinator crash is packed from whatever its directory holds, with that
checkpoint (the whole run up to its last data, marked aborted) as its summary.
"""
import json
import os
import pathlib
import shutil
import tarfile
import time

from hdrh.log import HistogramLogWriter

from stressgrid.metrics import encode_histograms

from . import Writer, csv_format

# Values are microseconds; interval max values are logged in the same unit.
HDR_MAX_VALUE_UNIT_RATIO = 1.0
CHECKPOINT_FILE = "checkpoint.json"
# The whole run's histograms, exactly: {name: [base64 of Histogram.encode()'s bytes, clamped]}.
HISTOGRAMS_FILE = "histograms.json"


def report_name(run_id):
    """The file name of a run's HTML report in the results directory."""
    return f"{run_id}.html"


def write_atomically(path, text):
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class _HdrLogs:
    """One HdrHistogram interval log per histogram name, opened on first use."""

    def __init__(self, directory, started_at):
        self.directory = directory
        self.started_at = started_at
        self.logs = {}

    def _log(self, name):
        log = self.logs.get(name)
        if log is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(self.directory / f"{name}.hlog", "a", encoding="utf-8")  # noqa: SIM115
            log = HistogramLogWriter(handle)
            log.output_log_format_version()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at))
            log.output_comment(f"[StartTime: {self.started_at:.6f} (seconds since epoch), {stamp}]")
            log.output_base_time(self.started_at * 1000.0)
            log.output_comment(f"[Histogram {name}: values and interval max in microseconds]")
            log.output_legend()
            self.logs[name] = log
        return log

    def write(self, report):
        """Append ``report``'s histograms, one interval line per log."""
        start = report.started_at - self.started_at
        end = report.ended_at - self.started_at
        for name, histogram in sorted(report.histograms.items()):
            if not histogram.total_count:
                continue
            log = self._log(name)
            converted = histogram.to_hdrhistogram()
            # A zero start would make the log writer read the histogram's own stamp.
            log.output_interval_histogram(converted, start_time_stamp_sec=max(start, 1e-6),
                                          end_time_stamp_sec=max(end, 2e-6),
                                          max_value_unit_ratio=HDR_MAX_VALUE_UNIT_RATIO)
            log.log.flush()

    def close(self):
        """Close every open log file."""
        for log in self.logs.values():
            log.close()
        self.logs.clear()


class ArchiveWriter(Writer):
    """Writes ``results.csv``, HdrHistogram logs, events, errors and the archive."""

    name = "archive"

    def __init__(self, data_dir):
        self.data_dir = pathlib.Path(data_dir)
        self.work_root = self.data_dir / "runs"
        self.results_dir = self.data_dir / "results"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.work_root.mkdir(parents=True, exist_ok=True)
        self._runs = {}

    def work_dir(self, run_id):
        """Where a run's files are written while it goes on."""
        return self.work_root / run_id

    def start(self, run):
        """Create the run's directory and write ``plan.json``."""
        directory = self.work_dir(run.id)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / "plan.json", json.dumps(run.plan, indent=2, sort_keys=True) + "\n")
        self._runs[run.id] = {"rows": [], "hdr": _HdrLogs(directory / "hdr", run.started_at)}

    def _state(self, run):
        state = self._runs.get(run.id)
        if state is None:  # started before a writer error; carry on with what we can
            self.start(run)
            state = self._runs[run.id]
        return state

    def event(self, run, event):
        """Append one event line to ``events.jsonl``."""
        with open(self.work_dir(run.id) / "events.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, sort_keys=True) + "\n")

    def interval(self, run, report):
        """Add a CSV row (rewriting ``results.csv``) and HdrHistogram intervals."""
        state = self._state(run)
        state["rows"].append(csv_format.interval_row(report, run.started_at))
        write_atomically(self.work_dir(run.id) / "results.csv", csv_format.render(state["rows"]))
        state["hdr"].write(report)

    def checkpoint(self, run, report_json):
        """Keep the run's report so far as ``checkpoint.json``, for ``recover``."""
        self._state(run)
        write_atomically(self.work_dir(run.id) / CHECKPOINT_FILE, report_json)

    def finish(self, run, final):
        """Write errors and summary, then pack the archive; returns its file name."""
        state = self._state(run)
        state["hdr"].close()
        del self._runs[run.id]
        directory = self.work_dir(run.id)
        (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
        if not state["rows"]:
            write_atomically(directory / "results.csv", csv_format.render([]))
        write_atomically(directory / HISTOGRAMS_FILE,
                         json.dumps(encode_histograms(final.totals.histograms), sort_keys=True) + "\n")
        return {"archive": self._seal(run.id, final.to_dict(run.writer_errors))}

    def _seal(self, run_id, summary):
        """Write ``errors.json`` and ``summary.json`` from ``summary``, then pack."""
        directory = self.work_dir(run_id)
        write_atomically(directory / "errors.json",
                          json.dumps(summary.get("errors") or {}, indent=2, sort_keys=True) + "\n")
        write_atomically(directory / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        events = directory / "events.jsonl"
        if not events.exists():
            events.touch()
        return self.pack(run_id)

    def pack(self, run_id):
        """Pack the run's directory into ``results/<run id>.tar.gz``; returns the file name."""
        directory = self.work_dir(run_id)
        name = f"{run_id}.tar.gz"
        target = self.results_dir / name
        temporary = target.with_name(name + ".tmp")
        with tarfile.open(temporary, "w:gz") as archive:
            if directory.exists():
                for path in sorted(directory.rglob("*")):
                    if path.is_file() and not path.name.endswith(".tmp"):
                        archive.add(path, arcname=f"{run_id}/{path.relative_to(directory)}")
        os.replace(temporary, target)
        shutil.rmtree(directory, ignore_errors=True)
        return name

    def checkpointed(self, run_id):
        """The last checkpoint of a run the coordinator died during, or ``None``."""
        try:
            report = json.loads((self.work_dir(run_id) / CHECKPOINT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    def recover(self, run_id, summary):
        """Archive a run the coordinator died during: pack what it had written, with
        ``summary`` (its checkpoint, or a bare aborted state) as ``summary.json``."""
        directory = self.work_dir(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
        if not (directory / "results.csv").exists():
            write_atomically(directory / "results.csv", csv_format.render([]))
        return self._seal(run_id, summary)

    def delete(self, run_id, archive):
        """Remove a run's archive and any leftover work directory."""
        if archive:
            (self.results_dir / archive).unlink(missing_ok=True)
        (self.results_dir / report_name(run_id)).unlink(missing_ok=True)
        shutil.rmtree(self.work_dir(run_id), ignore_errors=True)

    def close(self):
        """The coordinator is stopping: close the logs of any run still open."""
        for state in self._runs.values():
            state["hdr"].close()
        self._runs.clear()
