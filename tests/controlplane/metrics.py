"""The operator's ``/metrics``, parsed once for every tier: sums by name and labels, deltas, histogram quantiles."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

# -- parsing ------------------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class MetricSnapshot:
    series: dict[SeriesKey, float]

    @classmethod
    def parse(cls, text: str, *, skip_prefix: str | None = None) -> MetricSnapshot:
        """The samples of a Prometheus text exposition; those whose name starts with ``skip_prefix`` are left out."""
        series: dict[SeriesKey, float] = {}
        for line in text.splitlines():
            if not line or line[0] == "#" or (skip_prefix is not None and line.startswith(skip_prefix)):
                continue
            m = _SAMPLE.match(line)
            if m is None:
                continue
            labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
            series[(m.group(1), labels)] = float(m.group(3))
        return cls(series)

    def __sub__(self, other: MetricSnapshot) -> MetricSnapshot:
        return MetricSnapshot({k: v - other.series.get(k, 0.0) for k, v in self.series.items()})

    def select(self, name: str, **labels: str) -> Iterator[tuple[dict[str, str], float]]:
        for (n, lbls), v in self.series.items():
            if n == name:
                d = dict(lbls)
                if all(d.get(k) == want for k, want in labels.items()):
                    yield d, v

    def value(self, name: str, **labels: str) -> float:
        return sum(v for _, v in self.select(name, **labels))

    def by(self, name: str, *label_names: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for d, v in self.select(name):
            key = "/".join(d.get(k, "") for k in label_names)
            out[key] = out.get(key, 0.0) + v
        return out

    def histogram(self, name: str) -> Histogram:
        buckets = sorted(
            ((math.inf if d["le"] == "+Inf" else float(d["le"])), v) for d, v in self.select(f"{name}_bucket")
        )
        return Histogram(buckets, self.value(f"{name}_count"), self.value(f"{name}_sum"))


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count)
    count: float
    sum: float

    def quantile_bound(self, q: float) -> float | None:
        """The smallest bucket bound with at least ``q`` of the observations at or below it (inf: above the last)."""
        if self.count <= 0:
            return None
        for bound, cumulative in self.buckets:
            if cumulative >= q * self.count - 1e-9:
                return bound
        return math.inf

    def max_bound(self) -> float | None:
        return self.quantile_bound(1.0)
