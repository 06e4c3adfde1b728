"""Cost of recording one histogram value: ours vs the hdrhistogram package.

    python benchmarks/record.py

Both are called from Python the way a script's stop_timing reaches them, so the
figure for ours includes the Python call; protocol cores call the C method
directly and pay less.
"""
import pathlib
import sys
import timeit

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from hdrh.histogram import HdrHistogram

from stressgrid._core.metrics import Histogram, Recorder

N = 2_000_000


def best_ns(statement, namespace, number):
    runs = timeit.repeat(statement, globals=namespace, number=number, repeat=5)
    return min(runs) / number * 1e9


def main():
    ours = Histogram("latency_us")
    recorder = Recorder()
    theirs = HdrHistogram(1, 60_000_000, 3)
    namespace = {"ours": ours, "theirs": theirs, "recorder": recorder}
    empty = best_ns("pass", namespace, N)
    record = best_ns("ours.record(1234)", namespace, N)
    by_name = best_ns("recorder.record('latency_us', 1234)", namespace, N)
    reference = best_ns("theirs.record_value(1234)", namespace, N // 10)
    print(f"loop overhead            {empty:7.1f} ns")
    print(f"Histogram.record         {record:7.1f} ns")
    print(f"Recorder.record by name  {by_name:7.1f} ns")
    print(f"hdrh record_value        {reference:7.1f} ns")
    print(f"RESULT record_ns={record:.1f} by_name_ns={by_name:.1f} hdrh_ns={reference:.1f} "
          f"speedup={reference / record:.1f}")
    return 0 if record <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
