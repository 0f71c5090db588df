"""Counters, gauges and histograms in the Prometheus text exposition format (version 0.0.4), thread-safe.

Small on purpose: the service needs a handful of series, and an observation must cost a lock and a few
additions on the request path."""

from __future__ import annotations

import bisect
import math
import threading
from typing import Callable, Iterable

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    escaped = (str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()):
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name, help, labels=()):
        super().__init__(name, help, labels)
        self._values: dict[tuple, float] = {}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + by

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    """A gauge whose samples are read from `collect()` when rendered: {label values: value}."""

    kind = "gauge"

    def __init__(self, name, help, labels=(), collect: Callable[[], dict] | None = None):
        super().__init__(name, help, labels)
        self.collect = collect or (lambda: {})

    def render(self) -> list[str]:
        items = sorted(self.collect().items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name, help, labels=(), buckets: tuple[float, ...] = LATENCY_BUCKETS):
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple, list] = {}  # labels -> [bucket counts..., sum, count]

    def observe(self, value: float, *labels: str) -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0] * len(self.buckets) + [0.0, 0]
            if index < len(self.buckets):
                series[index] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return series[-1] if series else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        lines = self.header()
        names = self.label_names + ("le",)
        for key, series in items:
            cumulative = 0
            for bound, n in zip(self.buckets, series):
                cumulative += n
                lines.append(f"{self.name}_bucket{_labels(names, key + (_number(bound),))} {cumulative}")
            lines.append(f"{self.name}_bucket{_labels(names, key + ('+Inf',))} {series[-1]}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-2])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {series[-1]}")
        return lines


def render(metrics: Iterable[_Metric]) -> str:
    return "\n".join(line for metric in metrics for line in metric.render()) + "\n"
