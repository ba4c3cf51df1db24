"""
Request and response: L{QMUX} matches responses to requests over one link
(by the key L{KeyBuilder} builds, as jPOS's QMUX); L{MUXPool} sends each
request to a usable member MUX chosen by a strategy (L{strategyByName},
L{strategyByPath}); both keep a L{LatencySummary}.
"""

from muxpool.mux._ejection import Ejection
from muxpool.mux._keys import DEFAULT_KEY, KeyBuilder
from muxpool.mux._latency import BUCKETS, LatencySummary, percentile
from muxpool.mux._pool import MAX_UNANSWERED, MUXPool
from muxpool.mux._qmux import QMUX, UNMATCHED_LIMIT
from muxpool.mux._request import MEMBER_GRACE, RETRYABLE
from muxpool.mux._strategies import (
    BUILTIN,
    DEFAULT,
    LeastLatency,
    LeastPending,
    PrimarySecondary,
    RoundRobin,
    RoundRobinWithOverride,
    SplitByDivisor,
    StrategyConfigError,
    WeightedRoundRobin,
    knownNames,
    parseWeights,
    pluginStrategies,
    strategyByName,
    strategyByPath,
)

__all__ = [
    "BUCKETS",
    "BUILTIN",
    "DEFAULT",
    "DEFAULT_KEY",
    "Ejection",
    "KeyBuilder",
    "LatencySummary",
    "LeastLatency",
    "LeastPending",
    "MAX_UNANSWERED",
    "MEMBER_GRACE",
    "MUXPool",
    "PrimarySecondary",
    "QMUX",
    "RETRYABLE",
    "RoundRobin",
    "RoundRobinWithOverride",
    "SplitByDivisor",
    "StrategyConfigError",
    "UNMATCHED_LIMIT",
    "WeightedRoundRobin",
    "knownNames",
    "parseWeights",
    "percentile",
    "pluginStrategies",
    "strategyByName",
    "strategyByPath",
]
