"""
L{PoolHarness}: a started MUXPool over in-memory members on a C{Clock}, and
the helpers that drive such tests (L{outcomeOf}, L{runUntil}).
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Union

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from muxpool.interfaces import IStrategy
from muxpool.iso import sampleRequest
from muxpool.mux import QMUX, MUXPool, strategyByName
from muxpool.testing._issuer import MemoryIssuer
from muxpool.testing._link import MemoryLink


def outcomeOf(d: Deferred) -> Any:
    """
    The outcome C{d} has now: the response, or the exception it failed
    with (a L{NotSent} or an L{OutcomeUnknown}); C{None} while it has none
    (no request ends in C{None}).  C{d} keeps that outcome as a plain
    value, so asking again gives the same, and a failure read here is not
    logged as unhandled.
    """
    if not d.called:
        return None
    results: list = []

    def keep(result: object) -> object:
        results.append(result)
        return result

    d.addBoth(keep)
    if not results:
        return None  # waiting on another Deferred
    outcome = results[0].value if isinstance(results[0], Failure) else results[0]
    d.addBoth(lambda _: outcome)
    return outcome


def runUntil(clock: Clock, end: float) -> None:
    """
    Advance C{clock} to C{end}, stopping at each delayed call on the way,
    so every call runs at exactly its time (C{Clock.advance} runs all that
    are due at its end, each at the end's time).
    """
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls() if call.getTime() <= end]
        if not due:
            break
        clock.advance(max(0.0, min(due) - clock.seconds()))
    clock.advance(max(0.0, end - clock.seconds()))


MemberRef = Union[int, str, QMUX]


class PoolHarness:
    """
    A started L{MUXPool} over started L{QMUX}es, each on its own
    L{MemoryLink} with a L{MemoryIssuer} answering, all on one
    C{task.Clock}: what a unit test of a strategy, or of a pool setting,
    needs in a few lines::

        h = PoolHarness(3, MyStrategy())
        assert outcomeOf(h.request())["39"] == "00"
        assert [len(i.requests) for i in h.issuers] == [1, 0, 0]
        h.down(0)                     # its connection is lost
        h.issuers[1].when().never()   # and the next member hangs
        d = h.request(timeout=5)
        h.advance(5)                  # outcomeOf(d) is a RequestTimeout
        h.stop()

    Member C{name}'s QMUX is named C{name} and its link C{name-channel}.

    @ivar clock: the C{Clock} everything runs on.
    @ivar links: the members' L{MemoryLink}s, in member order.
    @ivar issuers: the L{MemoryIssuer} answering on each link.
    @ivar members: the member L{QMUX}es.
    @ivar pool: the L{MUXPool}.
    """

    def __init__(
        self,
        members: Union[int, Sequence[str]] = 2,
        strategy: Union[str, IStrategy, None] = None,
        *,
        config: Optional[Mapping[str, str]] = None,
        clock: Optional[Clock] = None,
        name: str = "pool",
        **options: Any,
    ) -> None:
        """
        @param members: how many members (named C{m0}, C{m1}...), or their
            names.
        @param strategy: a strategy name (built with C{config}, the pool's
            settings as in a descriptor: C{split-field}, C{weights}...) or
            an L{IStrategy}; C{None} is C{primary-secondary}.
        @param options: L{MUXPool}'s own, such as C{checkEnabled} or
            C{suspendAfterTimeouts}.
        """
        self.clock = clock if clock is not None else Clock()
        names = [f"m{i}" for i in range(members)] if isinstance(members, int) else list(members)
        self.links: List[MemoryLink] = [MemoryLink(f"{n}-channel") for n in names]
        self.issuers = [MemoryIssuer(link, self.clock) for link in self.links]
        self.members = [QMUX(n, link, self.clock) for n, link in zip(names, self.links)]
        if strategy is None or isinstance(strategy, str):
            strategy = strategyByName(strategy, config or {})
        self.pool = MUXPool(name, self.members, self.clock, strategy, **options)
        for member in self.members:
            member.startService()
        self.pool.startService()
        self._sent = 0

    def request(
        self,
        message: Optional[Mapping[str, str]] = None,
        timeout: float = 30.0,
        fields: Optional[Mapping[str, str]] = None,
    ) -> Deferred:
        """
        Send C{message} (by default an 0200 with a key of its own) with
        C{fields} set in it, through the pool; see L{MUXPool.request}.
        """
        if message is None:
            self._sent += 1
            message = sampleRequest(self._sent)
        return self.pool.request({**message, **(fields or {})}, timeout)

    def indexOf(self, member: MemberRef) -> int:
        """
        The position of C{member}: a position, a member's or link's name, or
        the member itself.
        """
        if isinstance(member, int):
            return member
        for i, (mux, link) in enumerate(zip(self.members, self.links)):
            if member is mux or member in (mux.name, link.name):
                return i
        raise KeyError(f"{self.pool.name}: no member {member!r}")

    def down(self, member: MemberRef, lose: bool = True) -> None:
        """
        Take C{member} out: its connection is lost (what was written on it
        ends L{LinkLost}), or with C{lose=False} its link is only not ready
        (as signed off: answers to what it has in flight still come).
        """
        link = self.links[self.indexOf(member)]
        if lose:
            link.lose()
        else:
            link.ready.set(False)

    def up(self, member: MemberRef) -> None:
        """
        Bring C{member}'s link back (see L{MemoryLink.connect}).  With
        C{checkEnabled}, it stays out of rotation until enabled again
        (C{pool.enable(name)}), as after a real reconnect in jPOS.
        """
        self.links[self.indexOf(member)].connect()

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} pass (see L{runUntil}).
        """
        runUntil(self.clock, self.clock.seconds() + seconds)

    def stop(self) -> Deferred:
        """
        Stop the pool, then the members; fires when every request in flight
        has its outcome: answer them, or L{advance} past their deadlines.
        """
        stopped = [self.pool.stopService()] + [m.stopService() for m in self.members]
        return gatherResults(stopped, consumeErrors=True)
