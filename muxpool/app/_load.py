"""
Generating traffic: sample requests, a bounded-concurrency request loop and
its report.  Used by C{muxpool send} / C{muxpool load}, the benchmarks and
the tests.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from muxpool.errors import NotSent, OutcomeUnknown
from muxpool.interfaces import IMUX
from muxpool.iso import sampleRequest
from muxpool.mux import percentile


@defer.inlineCallbacks
def runLoad(
    mux: IMUX,
    total: int,
    inFlight: int,
    timeout: float = 10.0,
    start: int = 0,
    onEach: Optional[Callable[[int, object], object]] = None,
    make: Callable[[int], Mapping[str, str]] = sampleRequest,
    latencies: Optional[List[float]] = None,
    clock: Optional[IReactorTime] = None,
    keepGoing: Optional[Callable[[], bool]] = None,
) -> Generator[defer.Deferred, Any, List[object]]:
    """
    Send C{total} requests through C{mux} with at most C{inFlight}
    outstanding.  Fires with one outcome per request (a response dict or a
    Failure), in request order; once C{keepGoing()} is false, requests not
    sent yet are not sent at all (their outcome is None).
    """
    outcomes: List[object] = [None] * total
    now = clock.seconds if clock is not None else time.perf_counter
    indices = iter(range(total))

    @defer.inlineCallbacks
    def worker() -> Generator[defer.Deferred, Any, None]:
        # Each of the inFlight workers sends its next request when the last
        # one has its outcome (inlineCallbacks loops, so a request ending at
        # once does not recurse).
        for i in indices:
            if keepGoing is not None and not keepGoing():
                return
            started = now()
            try:
                result = yield mux.request(make(start + i), timeout)
            except Exception:
                result = Failure()
            outcomes[i] = result
            if latencies is not None and isinstance(result, dict):
                latencies.append(now() - started)
            if onEach is not None:
                onEach(i, result)

    yield defer.gatherResults([worker() for _ in range(max(1, min(inFlight, total)))])
    return outcomes


def outcomeRecord(request: Mapping[str, str], outcome: object) -> Dict[str, str]:
    """
    One request's outcome as a small dict (for a record file): its 11 and
    41, and 39 if answered, else which failure.
    """
    record = {"11": request.get("11", ""), "41": request.get("41", "")}
    if isinstance(outcome, dict):
        record["39"] = outcome.get("39", "")
    elif isinstance(outcome, Failure) and outcome.check(OutcomeUnknown):
        record["outcome"] = "unknown"
        record["error"] = type(outcome.value).__name__
    elif isinstance(outcome, Failure) and outcome.check(NotSent):
        record["outcome"] = "not sent"
        record["error"] = type(outcome.value).__name__
    else:
        record["outcome"] = "error"
    return record


def report(
    outcomes: List[object],
    latencies: List[float],
    elapsed: float,
    splitField: Optional[str] = None,
    okCodes: Sequence[str] = ("00",),
) -> Dict[str, Any]:
    """
    What a run did: sent, answered by result code, not sent, outcome
    unknown, requests per second, latency percentiles, split by a field.
    C{failed} counts everything but answers whose 39 is in C{okCodes}.
    """
    answered: Counter[str] = Counter()
    split: Counter[str] = Counter()
    notSent = unknown = other = 0
    for o in outcomes:
        if isinstance(o, dict):
            answered[o.get("39", "??")] += 1
            if splitField:
                split[str(o.get(splitField, "-")).strip()] += 1
        elif isinstance(o, Failure) and o.check(OutcomeUnknown):
            unknown += 1
        elif isinstance(o, Failure) and o.check(NotSent):
            notSent += 1
        else:
            other += 1
    declined = sum(count for rc, count in answered.items() if rc not in okCodes)
    result: Dict[str, Any] = {
        "sent": len(outcomes),
        "answered": dict(sorted(answered.items())),
        "ok_codes": list(okCodes),
        "declined": declined,
        "failed": declined + notSent + unknown + other,
        "not_sent": notSent,
        "outcome_unknown": unknown,
        "errors": other,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(outcomes) / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": {f"p{p}": round(percentile(latencies, p) * 1000, 3) for p in (50, 95, 99)},
    }
    if splitField:
        result["split_field"] = splitField
        result["split"] = dict(sorted(split.items()))
    return result
