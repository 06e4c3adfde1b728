"""Amazon CloudWatch writer: one ``PutMetricData`` batch per report interval.

Namespace ``Stressgrid``, dimension ``Run`` = run id. Histograms go as
statistic sets (sample count, sum, minimum, maximum) so CloudWatch can
compute averages over any period; counters as the count within the
interval (CloudWatch sums them over a period), rates as ``Count/Second``.
Units: ``*_us`` Microseconds, ``cpu_percent`` Percent, byte counters Bytes
and Bytes/Second, everything else Count and Count/Second.
"""
import datetime

from stressgrid.metrics import rate_name

from . import Writer

NAMESPACE = "Stressgrid"
# PutMetricData takes up to 1000 values per call; stay well inside the payload limit.
BATCH = 150


def histogram_unit(name):
    """CloudWatch unit of a histogram: ``*_us`` Microseconds, ``*_percent`` Percent."""
    if name.endswith("_us"):
        return "Microseconds"
    if name.endswith("_percent"):
        return "Percent"
    return "None"


def counter_units(name):
    """``(unit of the counter, unit of its rate)``."""
    if name.endswith("_bytes"):
        return "Bytes", "Bytes/Second"
    return "Count", "Count/Second"


def metric_data(run_id, report):
    """The ``MetricData`` entries of one ``IntervalReport``."""
    timestamp = datetime.datetime.fromtimestamp(report.ended_at, datetime.timezone.utc)
    dimensions = [{"Name": "Run", "Value": run_id}]
    data = []
    for name, histogram in sorted(report.histograms.items()):
        count = histogram.total_count
        if not count:
            continue
        data.append({"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp,
                     "Unit": histogram_unit(name),
                     "StatisticValues": {"SampleCount": float(count),
                                         "Sum": float(histogram.mean * count),
                                         "Minimum": float(histogram.min),
                                         "Maximum": float(histogram.max)}})
    duration = report.duration_s
    for name in sorted(set(report.totals) | set(report.counters)):
        value = report.counters.get(name, 0)
        unit, rate_unit = counter_units(name)
        data.append({"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp,
                     "Unit": unit, "Value": float(value)})
        data.append({"MetricName": rate_name(name), "Dimensions": dimensions, "Timestamp": timestamp,
                     "Unit": rate_unit, "Value": float(value) / duration})
    for name, value in sorted(report.gauges.items()):
        data.append({"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp,
                     "Unit": "Count", "Value": float(value)})
    return data


class CloudWatchWriter(Writer):
    """Sends every interval to CloudWatch with boto3 (credentials from the usual chain)."""

    name = "cloudwatch"

    def __init__(self, region, endpoint_url="", client=None, namespace=NAMESPACE):
        if client is None:
            import boto3
            client = boto3.client("cloudwatch", region_name=region, endpoint_url=endpoint_url or None)
        self.client = client
        self.namespace = namespace

    def interval(self, run, report):
        """Put one interval's metrics, in batches."""
        data = metric_data(run.id, report)
        for start in range(0, len(data), BATCH):
            self.client.put_metric_data(Namespace=self.namespace, MetricData=data[start:start + BATCH])
