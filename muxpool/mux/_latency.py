"""
Latency for MUXes and pools: a summary of recent requests and a histogram of
all of them, in the buckets Prometheus scrapes.
"""

from bisect import bisect_left
from collections import deque
from typing import Dict, List, Sequence, Tuple

#: Upper bounds (seconds) of the latency histogram buckets; +Inf is implied.
BUCKETS: Tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


#: The bucket labels Prometheus shows, +Inf last.
_LABELS: Tuple[str, ...] = tuple(str(b) for b in BUCKETS) + ("+Inf",)


def percentile(values: Sequence[float], p: float) -> float:
    """
    The C{p}th percentile (0-100) of C{values}, nearest rank; 0 if empty.
    """
    return _ranked(sorted(values), p)


def _ranked(ordered: Sequence[float], p: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100.0 * len(ordered))) - 1))]


class LatencySummary:
    """
    Count, mean, max and percentiles of recent latencies (seconds), over a
    bounded window so memory stays flat under any load, and a cumulative
    histogram over L{BUCKETS}.
    """

    def __init__(self, window: int = 10000) -> None:
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0
        self._recent: deque = deque(maxlen=window)
        self._buckets: List[int] = [0] * (len(BUCKETS) + 1)

    def record(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        if seconds > self.maximum:
            self.maximum = seconds
        self._recent.append(seconds)
        self._buckets[bisect_left(BUCKETS, seconds)] += 1

    def histogram(self) -> List[Tuple[str, int]]:
        """
        Cumulative counts per bucket upper bound, Prometheus style (the last
        bound is C{"+Inf"}).
        """
        out, running = [], 0
        for bound, count in zip(_LABELS, self._buckets):
            running += count
            out.append((bound, running))
        return out

    def summary(self) -> Dict[str, float]:
        """
        Milliseconds: count, mean, p50, p95, p99, max.
        """
        ordered = sorted(self._recent)  # once, for the three ranks
        return {
            "count": self.count,
            "mean_ms": (self.total / self.count * 1000) if self.count else 0.0,
            "p50_ms": _ranked(ordered, 50) * 1000,
            "p95_ms": _ranked(ordered, 95) * 1000,
            "p99_ms": _ranked(ordered, 99) * 1000,
            "max_ms": self.maximum * 1000,
        }
