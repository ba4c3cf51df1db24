"""
Issue 18, item 4, measured: would "deadline awareness" (not sending a
request to a member whose recent latency already exceeds the time the
request has left) help?  On a task.Clock (so the figures do not depend on
the machine): a member answering in 10 ms beside one answering in 1.5 s,
requests with 1 s to live, 16 in flight, 400 requests.  It prints how many
time out with each strategy, with and without the rule (as a wrapper).

    .venv/bin/python benchmarks/deadline.py
"""

from zope.interface import implementer

from muxpool.interfaces import IStrategy
from muxpool.mux import LeastLatency, RoundRobin
from muxpool.testing import PoolHarness


@implementer(IStrategy)
class Aware:
    """round-robin, skipping a member whose EWMA exceeds the time left (1 s here)"""

    name = "aware"

    def __init__(self, inner, remaining=1.0):
        self.inner, self.costs, self.remaining = inner, LeastLatency({"seed": "1"}), remaining

    def observe(self, member, seconds, now):
        self.costs.observe(member, seconds, now)

    def select(self, pool, message):
        choice = self.inner.select(pool, message)
        if choice is not None and self.costs._costs.get(choice.name, (0, 0))[0] > self.remaining:
            others = [
                m
                for m in pool.members
                if m is not choice
                and pool.isUsable(m)
                and self.costs._costs.get(m.name, (0, 0))[0] <= self.remaining
            ]
            if others:
                return others[0]
        return choice


def run(strategy):
    h = PoolHarness(2, strategy)
    h.issuers[0].when().after(0.01)
    h.issuers[1].when().after(1.5)
    outcomes = []
    for _ in range(25):
        for _ in range(16):
            h.request(timeout=1.0).addBoth(outcomes.append)
        h.advance(0.05)
    h.advance(3)
    timeouts = sum(1 for o in outcomes if not isinstance(o, dict))
    return timeouts, len(outcomes)


for label, make in [
    ("round-robin", lambda: RoundRobin({})),
    ("least-latency", lambda: LeastLatency({"seed": "1"})),
    ("round-robin + deadline awareness", lambda: Aware(RoundRobin({}))),
    ("least-latency + deadline awareness", lambda: Aware(LeastLatency({"seed": "1"}))),
]:
    t, n = run(make())
    print(f"{label:>36}: {t} of {n} timed out")
