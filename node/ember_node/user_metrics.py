"""The metrics user code records with ``ember.util.metrics`` (Ray's ``ray.util.metrics``),
merged across the processes that report to this agent and exported on its endpoint.

Drivers and workers send batches of records (``ember.util.metrics.Record`` as plain tuples)
in a REQUEST ``user_metrics``; :meth:`UserMetrics.merge` checks and folds them in on the
agent's loop thread, and :meth:`UserMetrics.collect` builds the Prometheus families when the
endpoint is scraped (from the HTTP server's thread; a lock keeps the two apart). Counters and
histograms add up what every process recorded, a gauge keeps the last value set. Families are
named as Ray exports them (``ray_<name>``) and labelled with the metric's tags only. What a
peer sends is checked before it is used: a malformed record is refused whole, and at most
``MAX_SERIES`` distinct series are kept (later ones are dropped, and counted in
``ember_user_metrics_dropped_total``), so user tags cannot exhaust the agent's memory.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

log = logging.getLogger("ember.agent")

PREFIX = "ray_"  # Ray's name for application metrics, so Ray users' dashboards keep working
MAX_SERIES = 10_000
MAX_BUCKETS = 200
KINDS = ("counter", "gauge", "histogram")
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def check_record(rec: Any) -> str | None:
    """Why ``rec`` is not a well-formed record (None when it is). Pure."""
    if not isinstance(rec, tuple) or len(rec) != 6:
        return "a record is (kind, name, description, tag_keys, boundaries, samples)"
    kind, name, description, tag_keys, boundaries, samples = rec
    if kind not in KINDS:
        return f"unknown metric kind {kind!r}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return f"invalid metric name {name!r}"
    if not isinstance(description, str):
        return "a description is a str"
    if not isinstance(tag_keys, tuple) or not all(isinstance(k, str) and _LABEL_RE.match(k)
                                                  and k != "le" for k in tag_keys):
        return f"invalid tag keys {tag_keys!r}"
    if len(set(tag_keys)) != len(tag_keys):
        return f"repeated tag keys {tag_keys!r}"
    if not isinstance(boundaries, tuple) or not all(_finite(b) for b in boundaries):
        return "boundaries are finite numbers"
    if kind == "histogram" and not 0 < len(boundaries) <= MAX_BUCKETS:
        return f"a histogram has 1 to {MAX_BUCKETS} boundaries"
    if not isinstance(samples, list):
        return "samples are a list"
    for sample in samples:
        if not isinstance(sample, tuple) or len(sample) != 2:
            return "a sample is (tag values, value)"
        tags, value = sample
        if not isinstance(tags, tuple) or len(tags) != len(tag_keys) or not all(isinstance(t, str) for t in tags):
            return "a sample's tag values are str, one per tag key"
        if kind == "histogram":
            if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple)
                    and len(value[0]) == len(boundaries) + 1
                    and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value[0])
                    and _finite(value[1])):
                return "a histogram sample is (bucket counts, sum)"
        elif not _finite(value) or (kind == "counter" and value < 0):
            return f"a {kind} sample's value must be a finite number" + (" >= 0" if kind == "counter" else "")
    return None


class _Family:
    __slots__ = ("kind", "description", "tag_keys", "boundaries", "series")

    def __init__(self, kind: str, description: str, tag_keys: tuple, boundaries: tuple) -> None:
        self.kind = kind
        self.description = description
        self.tag_keys = tag_keys
        self.boundaries = boundaries
        self.series: dict[tuple, Any] = {}


class UserMetrics:
    """Every user metric reported to this agent (a prometheus_client collector)."""

    def __init__(self, node_id: str = "", max_series: int = MAX_SERIES) -> None:
        self.node_id = node_id  # labels ember's own family (the user's carry only their tags)
        self.max_series = max_series
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._n_series = 0
        self.dropped = 0  # samples dropped: too many series, or a clashing definition

    def merge(self, records: Any) -> None:
        """Fold a batch in; raises ValueError naming the problem when it is malformed (and
        then nothing of it is used)."""
        if not isinstance(records, list):
            raise ValueError("user_metrics takes a list of records")
        for rec in records:
            problem = check_record(rec)
            if problem is not None:
                raise ValueError(f"malformed user metric record: {problem}")
        with self._lock:
            for kind, name, description, tag_keys, boundaries, samples in records:
                self._merge_one(kind, name, description, tag_keys, boundaries, samples)

    def _merge_one(self, kind: str, name: str, description: str, tag_keys: tuple, boundaries: tuple,
                   samples: list) -> None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(kind, description, tag_keys, boundaries)
        elif (family.kind, family.tag_keys, family.boundaries) != (kind, tag_keys, boundaries):
            self.dropped += len(samples)
            log.warning("user metric %r was defined again differently (%s %s, first %s %s); "
                        "the new definition's values are dropped", name, kind, tag_keys, family.kind,
                        family.tag_keys)
            return
        series = family.series
        for tags, value in samples:
            old = series.get(tags)
            if old is None:
                if self._n_series >= self.max_series:
                    self.dropped += 1
                    continue
                self._n_series += 1
                series[tags] = [list(value[0]), float(value[1])] if kind == "histogram" else float(value)
            elif kind == "counter":
                series[tags] = old + value
            elif kind == "gauge":
                series[tags] = float(value)
            else:
                old[0] = [a + b for a, b in zip(old[0], value[0], strict=True)]
                old[1] += value[1]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = [(name, f.kind, f.description, f.tag_keys, f.boundaries,
                         [(tags, (list(v[0]), v[1]) if f.kind == "histogram" else v)
                          for tags, v in f.series.items()])
                        for name, f in self._families.items()]
            dropped = self.dropped
        for name, kind, description, tag_keys, boundaries, series in snapshot:
            full = PREFIX + name
            labels = list(tag_keys)
            if kind == "counter":
                family: Metric = CounterMetricFamily(full, description, labels=labels)
                for tags, value in series:
                    family.add_metric(list(tags), value)
            elif kind == "gauge":
                family = GaugeMetricFamily(full, description, labels=labels)
                for tags, value in series:
                    family.add_metric(list(tags), value)
            else:
                family = HistogramMetricFamily(full, description, labels=labels)
                for tags, (counts, total) in series:
                    buckets, running = [], 0
                    for bound, count in zip((*map(_bound, boundaries), "+Inf"), counts, strict=True):
                        running += count
                        buckets.append((bound, running))
                    family.add_metric(list(tags), buckets, total)
            yield family
        c = CounterMetricFamily("ember_user_metrics_dropped", "User metric samples dropped: over "
                                f"{self.max_series} series, or a name defined again differently.",
                                labels=["node_id"])
        c.add_metric([self.node_id], dropped)
        yield c


def _bound(b: float) -> str:
    return repr(float(b))
