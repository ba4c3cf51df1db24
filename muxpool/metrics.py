"""
Latency summaries for MUXes and pools.
"""

from collections import deque
from typing import Dict


class LatencySummary:
    """
    Count, mean, max and percentiles of recent latencies (seconds), over a
    bounded window so memory stays flat under any load.
    """

    def __init__(self, window: int = 10000) -> None:
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0
        self._recent = deque(maxlen=window)

    def record(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        if seconds > self.maximum:
            self.maximum = seconds
        self._recent.append(seconds)

    def percentile(self, p: float) -> float:
        """
        The C{p}th percentile (0-100) of the recent window, in seconds.
        """
        if not self._recent:
            return 0.0
        ordered = sorted(self._recent)
        index = min(len(ordered) - 1, max(0, int(round(p / 100.0 * len(ordered))) - 1))
        return ordered[index]

    def summary(self) -> Dict[str, float]:
        """
        Milliseconds: count, mean, p50, p95, p99, max.
        """
        return {
            "count": self.count,
            "mean_ms": (self.total / self.count * 1000) if self.count else 0.0,
            "p50_ms": self.percentile(50) * 1000,
            "p95_ms": self.percentile(95) * 1000,
            "p99_ms": self.percentile(99) * 1000,
            "max_ms": self.maximum * 1000,
        }
