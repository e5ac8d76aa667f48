"""``ember.util.metrics`` (Ray's ``ray.util.metrics``): application metrics from user code.

``Counter``, ``Gauge`` and ``Histogram`` take Ray's constructor arguments (``name``,
``description``, ``tag_keys``, and ``boundaries`` for a histogram), ``set_default_tags``
and ``inc``/``set``/``observe`` with ``tags``, and are exported on the node agent's
Prometheus endpoint (``init(metrics_port=...)``, ``ember start --metrics-port``) as Ray
names them: ``ray_<name>`` (a counter as ``ray_<name>_total``), labelled with their tags.

They work the same in a driver, a task and an actor. A record costs a lock and a dict
update in the process that makes it (:class:`_Buffer`); the process's metrics go to its
node agent in batches, at most every ``FLUSH_S`` seconds, from a daemon thread (and once
more when a driver shuts down or a worker ends), never a message per call. What a process
sends is plain data (``Record``), which the agent merges across processes: counters and
histograms add up, a gauge keeps the last value set (see ``ember_node.user_metrics``).
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, NamedTuple

from ember import _context
from ember import _messages as M

__all__ = ["Counter", "Gauge", "Histogram", "Metric"]

FLUSH_S = 0.5  # how often a process sends what its metrics recorded
REQUEST_WHAT = "user_metrics"  # the agent's REQUEST handler that takes the records
COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class Record(NamedTuple):
    """What one process recorded for one metric since its last batch (plain data only:
    it crosses into the agent, which decodes it as data).

    ``samples``: (tag values in ``tag_keys`` order, value) pairs; the value is the amount
    added for a counter, the last value for a gauge, and for a histogram
    ``(per-bucket counts, the last one for +Inf; sum of the observed values)``.
    """

    kind: str
    name: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...]
    samples: list[tuple[tuple[str, ...], Any]]


class _Buffer:
    """What this process's metrics recorded since the last ``drain`` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (kind, name) -> [description, tag_keys, boundaries, {tag values: value}]
        self._pending: dict[tuple[str, str], list] = {}

    def _series(self, metric: Metric) -> dict:
        key = (metric._kind, metric._name)
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = [metric._description, metric._tag_keys,
                                          getattr(metric, "_boundaries", ()), {}]
        return entry[3]

    def add(self, metric: Metric, tags: tuple[str, ...], amount: float) -> None:
        with self._lock:
            series = self._series(metric)
            series[tags] = series.get(tags, 0.0) + amount

    def set(self, metric: Metric, tags: tuple[str, ...], value: float) -> None:
        with self._lock:
            self._series(metric)[tags] = value

    def observe(self, metric: Metric, tags: tuple[str, ...], bucket: int, n_buckets: int, value: float) -> None:
        with self._lock:
            series = self._series(metric)
            entry = series.get(tags)
            if entry is None:
                entry = series[tags] = [[0] * n_buckets, 0.0]
            entry[0][bucket] += 1
            entry[1] += value

    def __bool__(self) -> bool:
        return bool(self._pending)

    def drain(self) -> list[Record]:
        """Everything recorded since the last drain, as records (and forget it)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        out = []
        for (kind, name), (description, tag_keys, boundaries, series) in pending.items():
            if kind == HISTOGRAM:
                samples = [(tags, (tuple(counts), total)) for tags, (counts, total) in series.items()]
            else:
                samples = list(series.items())
            out.append(Record(kind, name, description, tag_keys, boundaries, samples))
        return out

    def put_back(self, records: list[Record]) -> None:
        """Records that could not be sent (no cluster yet): merged into what comes next."""
        with self._lock:
            for rec in records:
                key = (rec.kind, rec.name)
                entry = self._pending.setdefault(key, [rec.description, rec.tag_keys, rec.boundaries, {}])
                series = entry[3]
                for tags, value in rec.samples:
                    old = series.get(tags)
                    if old is None:
                        series[tags] = [list(value[0]), value[1]] if rec.kind == HISTOGRAM else value
                    elif rec.kind == COUNTER:
                        series[tags] = old + value
                    elif rec.kind == HISTOGRAM:
                        old[0] = [a + b for a, b in zip(old[0], value[0], strict=True)]
                        old[1] += value[1]
                    # a gauge set since the drain keeps its newer value


_buffer = _Buffer()
_flusher: threading.Thread | None = None
_flusher_lock = threading.Lock()


def flush(rt: Any = None) -> bool:
    """Send what this process's metrics recorded to its node agent now (``rt``: the runtime
    to send on, the current one by default). False when there is no cluster to send to
    (the records are kept for the next try)."""
    if not _buffer:
        return True
    rt = rt if rt is not None else _context.current_runtime()
    records = _buffer.drain()
    if rt is None or getattr(rt, "closed", False):
        _buffer.put_back(records)
        return False
    try:
        rt.send((M.REQUEST, 0, REQUEST_WHAT, [tuple(r) for r in records]))
    except Exception:  # noqa: BLE001 - the cluster is going away: the records go with it
        return False
    return True


def _flush_loop() -> None:
    wake = threading.Event()
    while True:
        wake.wait(FLUSH_S)
        flush()


def _ensure_flusher() -> None:
    global _flusher
    if _flusher is None:
        with _flusher_lock:
            if _flusher is None:
                _flusher = threading.Thread(target=_flush_loop, name="ember-metrics-flusher", daemon=True)
                _flusher.start()


def _after_fork_in_child() -> None:
    """A forked child starts with nothing recorded and no flusher thread (its parent's did
    not survive the fork): what the parent recorded is the parent's to send."""
    global _buffer, _flusher, _flusher_lock
    _buffer = _Buffer()
    _flusher = None
    _flusher_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_tag_keys(tag_keys: Any) -> tuple[str, ...]:
    if tag_keys is None:
        return ()
    if not isinstance(tag_keys, tuple):
        raise TypeError(f"tag_keys must be a tuple of str, got {type(tag_keys).__name__}: {tag_keys!r}")
    for key in tag_keys:
        if not isinstance(key, str):
            raise TypeError(f"tag_keys must be a tuple of str, got the key {key!r}")
    return tag_keys


class Metric:
    """The base of ``Counter``, ``Gauge`` and ``Histogram``: a name, a description, tag keys
    and default tags. A metric whose name Prometheus refuses is kept but records nothing
    (with a warning), as in Ray."""

    _kind = ""

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a metric needs a non-empty str name, got {name!r}")
        self._name = name
        self._description = str(description or "")
        self._tag_keys = _check_tag_keys(tag_keys)
        self._default_tags: dict[str, str] = {}
        self._discard = not _NAME_RE.match(name)
        if self._discard:
            warnings.warn(f"invalid metric name {name!r}: a name may hold only letters, digits, '_' and ':' "
                          "and must not start with a digit; this metric records nothing", UserWarning,
                          stacklevel=3)

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tags used by every record that does not give them itself; returns the metric."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"unknown tag key {key!r} for metric {self._name!r}: its tag_keys are "
                                 f"{self._tag_keys}")
            if not isinstance(value, str):
                raise TypeError(f"tag values must be str; the tag {key!r} got {value!r}")
        self._default_tags = dict(default_tags)
        return self

    @property
    def info(self) -> dict[str, Any]:
        """The metric's name, description, tag keys and default tags."""
        return {"name": self._name, "description": self._description, "tag_keys": self._tag_keys,
                "default_tags": dict(self._default_tags)}

    def _tag_values(self, tags: dict[str, str] | None) -> tuple[str, ...]:
        """The tag values of one record, in ``tag_keys`` order: ``tags`` over the defaults."""
        final = dict(self._default_tags)
        if tags:
            for key, value in tags.items():
                if key not in self._tag_keys:
                    raise ValueError(f"unknown tag key {key!r} for metric {self._name!r}: its tag_keys are "
                                     f"{self._tag_keys}")
                if not isinstance(value, str):
                    raise TypeError(f"tag values must be str; the tag {key!r} got {value!r}")
            final.update(tags)
        missing = [k for k in self._tag_keys if k not in final]
        if missing:
            raise ValueError(f"missing value for tag key(s) {missing} of metric {self._name!r}: pass them "
                             "in tags= or set_default_tags()")
        return tuple(final[k] for k in self._tag_keys)

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self), self._init_args(), self._default_tags))

    def _init_args(self) -> tuple:
        return (self._name, self._description, self._tag_keys)


def _rebuild(cls: type, args: tuple, default_tags: dict[str, str]) -> Metric:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = cls(*args)
    metric._default_tags = dict(default_tags)
    return metric


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} takes an int or float, got {type(value).__name__}: {value!r}")
    return float(value)


class Counter(Metric):
    """A cumulative count that only goes up (Prometheus counter ``ray_<name>_total``)."""

    _kind = COUNTER

    def inc(self, value: int | float = 1.0, tags: dict[str, str] | None = None) -> None:
        """Add ``value`` (> 0, default 1) to the count for ``tags`` (over the default tags)."""
        amount = _number(value, "Counter.inc")
        if amount <= 0:
            raise ValueError(f"Counter.inc needs a value > 0, got {value!r}")
        values = self._tag_values(tags)
        if self._discard:
            return
        _buffer.add(self, values, amount)
        _ensure_flusher()


class Gauge(Metric):
    """A value that goes up and down; the last one set is exported (Prometheus gauge)."""

    _kind = GAUGE

    def set(self, value: int | float, tags: dict[str, str] | None = None) -> None:
        """Set the gauge for ``tags`` (over the default tags) to ``value``."""
        number = _number(value, "Gauge.set")
        values = self._tag_values(tags)
        if self._discard:
            return
        _buffer.set(self, values, number)
        _ensure_flusher()


class Histogram(Metric):
    """Observed values counted in buckets (Prometheus histogram): ``boundaries`` are the
    buckets' upper bounds (positive, ascending); a last bucket, +Inf, is added."""

    _kind = HISTOGRAM

    def __init__(self, name: str, description: str = "", boundaries: Sequence[float] | None = None,
                 tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        if not boundaries:
            raise ValueError(f"Histogram {name!r} needs boundaries=[...], the upper bounds of its buckets")
        bounds = []
        for b in boundaries:
            number = _number(b, "Histogram boundaries")
            if number <= 0:
                raise ValueError(f"Histogram {name!r}: boundaries must be positive numbers, got {b!r}")
            bounds.append(number)
        if bounds != sorted(set(bounds)):
            raise ValueError(f"Histogram {name!r}: boundaries must be strictly ascending, got {list(boundaries)}")
        self._boundaries = tuple(bounds)

    def observe(self, value: int | float, tags: dict[str, str] | None = None) -> None:
        """Count ``value`` in its bucket for ``tags`` (over the default tags)."""
        number = _number(value, "Histogram.observe")
        values = self._tag_values(tags)
        if self._discard:
            return
        bounds = self._boundaries
        _buffer.observe(self, values, bisect_left(bounds, number), len(bounds) + 1, number)
        _ensure_flusher()

    @property
    def info(self) -> dict[str, Any]:
        """As ``Metric.info``, with the boundaries."""
        return {**super().info, "boundaries": list(self._boundaries)}

    def _init_args(self) -> tuple:
        return (self._name, self._description, self._boundaries, self._tag_keys)
