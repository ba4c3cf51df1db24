"""
MUXPool: a MUX over an ordered list of member MUXes, each request sent to a
usable member chosen by a strategy.

A member is usable when it is ready and enabled.  With no usable member the
request waits for a readiness change (never polls) until its deadline.  A
member's "not sent" is retried on another member within the same deadline;
an "outcome unknown" is never resent: payments are not idempotent.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Set

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool.errors import NoMUXAvailable, NotSent
from muxpool.interfaces import IMUX, IPool, IStrategy
from muxpool.metrics import LatencySummary
from muxpool.readiness import Readiness
from muxpool.strategies import strategyByName


def _memberNames(member) -> tuple:
    link = getattr(member, "link", None)
    return (member.name, getattr(link, "name", None))


@implementer(IPool)
class _Attempt:
    """
    The pool as one request's retries see it: members already tried for it
    are not usable.
    """

    def __init__(self, pool: "MUXPool", tried: Set[int]) -> None:
        self.pool = pool
        self.tried = tried
        self.members = pool.members

    def isUsable(self, member) -> bool:
        return id(member) not in self.tried and self.pool.isUsable(member)

    def memberNamed(self, name):
        return self.pool.memberNamed(name)


@implementer(IMUX, IPool)
class MUXPool(Service):
    """
    A pool of MUXes; itself an L{IMUX}, so pools nest and L{Forward} can use
    one.

    @ivar counters: C{requests} per member name, C{no_mux}, C{retries},
        C{tx}, C{rx}.
    @ivar latency: the pool's own L{LatencySummary} (selection and waiting
        included).
    """

    log = Logger()

    def __init__(
        self,
        name: str,
        members: Sequence[IMUX],
        clock,
        strategy: Optional[IStrategy] = None,
        checkEnabled: bool = False,
        fallback: Optional[IStrategy] = None,
    ) -> None:
        self.setName(name)
        self.clock = clock
        self.strategy = strategy if strategy is not None else strategyByName(None)
        self.fallback = fallback
        self.checkEnabled = checkEnabled
        self.ready = Readiness(False)
        self.latency = LatencySummary()
        self.counters = {"requests": {}, "no_mux": 0, "retries": 0, "tx": 0, "rx": 0}
        self.members: tuple = ()
        self._disabled: Set[str] = set()
        self._enabled: Set[str] = set()
        self._waiters: List[Deferred] = []
        self._inFlight = 0
        self.setMembers(members)

    def __repr__(self) -> str:
        return f"<MUXPool {self.name} {[m.name for m in self.members]}>"

    # -- members --------------------------------------------------------

    def setMembers(self, members: Sequence[IMUX]) -> None:
        """
        Replace the member list (hot deploy).  Requests in flight on a
        removed member still end with their own outcomes.
        """
        new = tuple(members)
        for member in self.members:
            if member not in new:
                member.ready.removeObserver(self._memberChanged)
        for member in new:
            if member not in self.members:
                member.ready.addObserver(self._memberChanged)
                self.counters["requests"].setdefault(member.name, 0)
        self.members = new
        self._changed()

    def addMember(self, member: IMUX) -> None:
        if member not in self.members:
            self.setMembers(self.members + (member,))

    def removeMember(self, member: IMUX) -> None:
        self.setMembers(tuple(m for m in self.members if m is not member))

    def memberNamed(self, name: str) -> Optional[IMUX]:
        for member in self.members:
            if name in _memberNames(member):
                return member
        return None

    def enable(self, name: str) -> None:
        """
        Let member C{name} take new requests.
        """
        self._enabled.add(name)
        self._disabled.discard(name)
        self._changed()

    def disable(self, name: str) -> None:
        """
        Stop giving member C{name} new requests; its in-flight ones finish.
        This is how a node is drained for an update.
        """
        self._enabled.discard(name)
        self._disabled.add(name)
        self._changed()

    def isEnabled(self, member: IMUX) -> bool:
        """
        Not disabled and, with C{checkEnabled} (jPOS), explicitly enabled.
        """
        name = member.name
        return name not in self._disabled and (not self.checkEnabled or name in self._enabled)

    def isUsable(self, member: IMUX) -> bool:
        return bool(member.ready) and self.isEnabled(member)

    def _memberChanged(self, value: bool) -> None:
        self._changed()

    def _changed(self) -> None:
        self.ready.set(any(self.isUsable(m) for m in self.members))
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def _nextChange(self) -> Deferred:
        d = Deferred(lambda d: self._waiters.remove(d) if d in self._waiters else None)
        self._waiters.append(d)
        return d

    # -- IMUX -------------------------------------------------------------

    def isConnected(self) -> bool:
        return bool(self.ready)

    def pendingCount(self) -> int:
        return self._inFlight

    def select(self, message: Mapping[str, str], view: Optional[IPool] = None) -> Optional[IMUX]:
        """
        The member the strategy picks for C{message} (the fallback strategy
        when a custom one returns None), only if usable.
        """
        view = view or self
        for strategy in (self.strategy, self.fallback):
            if strategy is None:
                continue
            member = strategy.select(view, message)
            if member is not None and view.isUsable(member):
                return member
        return None

    def send(self, message: Mapping[str, str]) -> None:
        """
        Write C{message} through a usable member now.

        @raise NoMUXAvailable: no usable member.
        """
        member = self.select(message)
        if member is None:
            self.counters["no_mux"] += 1
            raise NoMUXAvailable(f"{self.name}: no MUX available")
        member.send(message)
        self._count(member)

    def _count(self, member) -> None:
        requests = self.counters["requests"]
        requests[member.name] = requests.get(member.name, 0) + 1
        self.counters["tx"] += 1

    def request(self, message: Mapping[str, str], timeout: float) -> Deferred:
        """
        Send C{message} through a usable member; see L{IMUX.request}.
        """
        started = self.clock.seconds()
        deadline = started + timeout
        tried: Set[int] = set()
        result = Deferred(lambda d: state.cancel())
        state = _Request(self, message, deadline, tried, result, started)
        self._inFlight += 1
        state.attempt()
        return result

    # -- service -------------------------------------------------------------

    def stopService(self):
        Service.stopService(self)
        return succeed(None)


class _Request:
    """
    One pool request: select, wait for a change, send, retry on not-sent.
    """

    def __init__(self, pool, message, deadline, tried, result, started):
        self.pool = pool
        self.message = message
        self.deadline = deadline
        self.tried = tried
        self.result = result
        self.started = started
        self.waiting: Optional[Deferred] = None
        self.timer = None
        self.inner: Optional[Deferred] = None
        self.refused = None
        self.done = False

    def attempt(self) -> None:
        if self.done:
            return
        pool = self.pool
        member = pool.select(self.message, _Attempt(pool, self.tried) if self.tried else None)
        remaining = self.deadline - pool.clock.seconds()
        if member is None:
            if self.refused is not None:
                self.finish(self.refused)
                return
            if remaining <= 0:
                self._noMUX()
                return
            self.waiting = pool._nextChange()
            self.waiting.addCallbacks(self._changed, lambda failure: None)  # cancelled
            if self.timer is None:
                self.timer = pool.clock.callLater(remaining, self._deadline)
            return
        if self.refused is not None:
            pool.counters["retries"] += 1
            pool.log.info("{pool}: {error}; trying {member}", pool=pool.name,
                          error=str(self.refused.value), member=member.name)
        self.tried.add(id(member))
        pool._count(member)
        self.inner = maybeDeferred(member.request, self.message, remaining)
        self.inner.addCallbacks(self._answered, self._failed)

    def _changed(self, _) -> None:
        self.waiting = None
        self.attempt()

    def _deadline(self) -> None:
        self.timer = None
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.cancel()
            self._noMUX()

    def _noMUX(self) -> None:
        self.pool.counters["no_mux"] += 1
        self.finish(NoMUXAvailable(f"{self.pool.name}: no MUX available before the deadline - not sent"))

    def _answered(self, response) -> None:
        pool = self.pool
        pool.counters["rx"] += 1
        pool.latency.record(pool.clock.seconds() - self.started)
        self.finish(response)

    def _failed(self, failure) -> None:
        self.inner = None
        if failure.check(NotSent) and not self.done:
            self.refused = failure  # safe to try another member
            self.attempt()
            return
        self.finish(failure)

    def cancel(self) -> None:
        self.finish(None, fire=False)
        if self.waiting is not None:
            self.waiting.cancel()
        if self.inner is not None:
            self.inner.cancel()

    def finish(self, outcome, fire: bool = True) -> None:
        if self.done:
            return
        self.done = True
        self.pool._inFlight -= 1
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if not fire:
            return
        if isinstance(outcome, (Exception, Failure)):
            self.result.errback(outcome)
        else:
            self.result.callback(outcome)
