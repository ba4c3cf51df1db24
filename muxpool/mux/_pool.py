"""
MUXPool: a MUX over an ordered list of member MUXes, each request sent to a
usable member chosen by a strategy.

A member is usable when it is ready, enabled, not ejected and not
stalled (holding C{maxUnanswered} requests sent since its last answer,
while another member is usable).  With no
usable member the request waits for a change (never polls) until its
deadline, and nothing is written after the deadline.  A member's "link not
ready" or "no member available" is retried on another member within the
same deadline; nothing else is (a duplicate key must not go out on a second
link), and an "outcome unknown" never is: payments are not idempotent.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from muxpool._support import (
    DeadlineQueue,
    RateLimiter,
    Readiness,
    Waiters,
    describeCode,
    describeError,
)
from muxpool.errors import (
    NoCapacity,
    NoMUXAvailable,
    StrategyFailed,
)
from muxpool.interfaces import IMUX, IDirectMUX, IOutcome, IPool, IStrategy
from muxpool.mux._ejection import Ejection, Ejector, ejectionFrom
from muxpool.mux._latency import LatencySummary
from muxpool.mux._outcome import give
from muxpool.mux._request import _atCapacity, _Request
from muxpool.mux._strategies import strategyByName

#: A member's requests sent since its last answer before it is stalled.
MAX_UNANSWERED = 64


def _memberNames(member: IMUX) -> tuple:
    link = getattr(member, "link", None)
    return (member.name, getattr(link, "name", None))


@implementer(IDirectMUX, IPool)
class MUXPool(Service):
    """
    A pool of MUXes; itself an L{IMUX}, so pools nest and L{Forward} can use
    one.  It watches its members from C{startService} to C{stopService}.

    @param checkEnabled: jPOS's C{check-enabled}: a member is usable only
        once enabled (L{enable}), and a disconnect of the member clears that
        (as jPOS ties the C{NAME.enabled} entry to the C{ready} entry its
        channel replaces on every connect).
    @param ejection: beyond jPOS, off by default: when a member is taken
        out of rotation as an outlier (timeouts, or "inoperative" answers,
        in a row) and how it comes back (L{Ejection}).  A hung issuer
        whose kernel still accepts connections then costs a few requests.
    @param suspendAfterTimeouts: the older spelling of C{ejection}'s
        C{consecutiveTimeouts}.
    @param maxInFlight: beyond jPOS, off (None) by default: at this many
        requests in flight the pool refuses new ones at once with
        L{NoCapacity}.  A member QMUX at its own C{max-in-flight} is not
        used for a request, and when every member is, the request ends at
        once with L{NoCapacity}; both counted as C{shed}.
    @param maxUnanswered: beyond jPOS: a member that holds this many of
        the pool's requests, all sent since its last answer, is stalled:
        skipped while another member is usable, until it answers or those
        requests end.  So a member that answers nothing holds at most that
        many requests (and so of a front session's in-flight limit), not
        all of them for a whole timeout.  A member that answers is stalled
        only by a burst of that many within one of its response times, and
        only until its next answer.  0 never.

    @ivar counters: C{requests} per member name, C{no_mux}, C{retries},
        C{tx}, C{rx}, C{ejections}, C{returns}, C{panics}, C{stalls}, C{shed}.
    @ivar latency: the pool's own L{LatencySummary} (selection and waiting
        included).
    """

    #: It ends every request by its deadline by itself (a pool over it
    #: needs no timer of its own for it; see L{IDirectMUX}).
    endsRequestsByDeadline = True

    log = Logger()
    name: str

    def __init__(
        self,
        name: str,
        members: Sequence[IMUX],
        clock: IReactorTime,
        strategy: Optional[IStrategy] = None,
        checkEnabled: bool = False,
        fallback: Optional[IStrategy] = None,
        suspendAfterTimeouts: int = 0,
        maxUnanswered: int = MAX_UNANSWERED,
        ejection: Optional[Ejection] = None,
        maxInFlight: Optional[int] = None,
    ) -> None:
        self.setName(name)
        self.clock = clock
        self.strategy = strategy if strategy is not None else strategyByName(None)
        #: The strategy's C{observe(member, seconds, now)}, if it learns
        #: from response times (least-latency): told of each answer.
        self.observe: Optional[Callable[[IMUX, float, float], None]] = getattr(
            self.strategy, "observe", None
        )
        self.fallback = fallback
        self.checkEnabled = checkEnabled
        #: When members are ejected (L{Ejection}; C{suspendAfterTimeouts}
        #: is the older spelling of its C{consecutiveTimeouts}).
        self.ejection = ejectionFrom(suspendAfterTimeouts, ejection)
        self.suspendAfterTimeouts = self.ejection.consecutiveTimeouts
        self.maxUnanswered = maxUnanswered
        self.maxInFlight = maxInFlight
        #: Whether any member has a max-in-flight (requests then see them full).
        self.limited = False
        self.ready = Readiness(False, f"{name} ready state")
        self.latency = LatencySummary()
        # "requests" holds a count per member name; the others are counts.
        self.counters: Dict[str, Any] = {
            "requests": {},
            "no_mux": 0,
            "retries": 0,
            "tx": 0,
            "rx": 0,
            "ejections": 0,
            "returns": 0,
            "panics": 0,
            "stalls": 0,
            "shed": 0,
        }
        self.members: tuple = ()
        self._watching: Dict[IMUX, Callable[[bool], None]] = {}
        self._disabled: Set[str] = set()
        self._draining: Set[str] = set()
        self._enabled: Set[str] = set()
        self.ejector = Ejector(self, self.ejection)
        # per member name: [its answers so far, requests sent since the last
        # one and still pending]
        self._unanswered: Dict[str, List[int]] = {}
        self._stalled: Set[str] = set()
        self._waiters = Waiters()
        self._drainWaiters = Waiters()
        self._inFlight = 0
        self._limiter = RateLimiter(clock=clock)
        self._deadlines: DeadlineQueue[_Request] = DeadlineQueue(clock, _Request.expired)
        self.setMembers(members)

    def __repr__(self) -> str:
        return f"<MUXPool {self.name} {[m.name for m in self.members]}>"

    # -- service ---------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        for member in self.members:
            self._watch(member)
        self._changed()

    def stopService(self) -> Deferred:
        """
        Take no more requests (those waiting for a member end "not sent"),
        let go of the members; fires when the requests in flight have their
        outcomes.
        """
        Service.stopService(self)
        for member in list(self._watching):
            self._unwatch(member)
        self.ejector.stop()
        self._changed()
        return self.whenDrained()

    # -- members --------------------------------------------------------

    def setMembers(self, members: Sequence[IMUX]) -> None:
        """
        Replace the member list (hot deploy).  Requests in flight on a
        removed member still end with their own outcomes.
        """
        new = tuple(members)
        for member in self.members:
            if member not in new:
                self._unwatch(member)
                if not any(m.name == member.name for m in new):
                    self._forget(member.name)
        for member in new:
            self.counters["requests"].setdefault(member.name, 0)
            if self.running:
                self._watch(member)
        self.members = new
        self.limited = any(getattr(m, "maxInFlight", None) is not None for m in new)
        self._changed()

    def _watch(self, member: IMUX) -> None:
        if member not in self._watching:
            observer = partial(self._memberChanged, member)
            self._watching[member] = observer
            member.ready.addObserver(observer)

    def _unwatch(self, member: IMUX) -> None:
        observer = self._watching.pop(member, None)
        if observer is not None:
            member.ready.removeObserver(observer)

    def _forget(self, name: str) -> None:
        self.ejector.forget(name)
        self._unanswered.pop(name, None)
        self._stalled.discard(name)

    def memberNamed(self, name: str) -> Optional[IMUX]:
        for member in self.members:
            if name in _memberNames(member):
                return member
        return None

    def enable(self, name: str) -> None:
        """
        Let member C{name} take new requests (with C{checkEnabled}, for as
        long as it stays connected).
        """
        self._enabled.add(name)
        self._disabled.discard(name)
        self._draining.discard(name)
        self.log.info(
            "{pool}: {member} enabled", pool=self.name, member=name, event="pool.member_enabled"
        )
        self._changed()

    def disable(self, name: str, draining: bool = False) -> None:
        """
        Stop giving member C{name} new requests; its in-flight ones finish.
        This is how a node is drained for an update (C{draining}: the
        operator waits for it, see L{isDraining}).
        """
        self._enabled.discard(name)
        self._disabled.add(name)
        if draining:
            self._draining.add(name)
        self.log.info(
            "{pool}: {member} {how}",
            pool=self.name,
            member=name,
            how="draining" if draining else "disabled",
            event="pool.member_draining" if draining else "pool.member_disabled",
        )
        self._changed()

    def isDraining(self, member: IMUX) -> bool:
        """
        Disabled to be drained, and still with requests in flight.
        """
        return member.name in self._draining and member.pendingCount() > 0

    def whenDrained(self) -> Deferred:
        """
        Fires when no request is in flight through the pool (at once if none
        is).
        """
        return succeed(None) if not self._inFlight else self._drainWaiters.wait()

    def isEnabled(self, member: IMUX) -> bool:
        """
        Not disabled and, with C{checkEnabled} (jPOS), explicitly enabled.
        """
        name = member.name
        return name not in self._disabled and (not self.checkEnabled or name in self._enabled)

    def isEjected(self, member: IMUX) -> bool:
        """
        Whether C{member} is out of rotation as an outlier (see L{Ejection}).
        """
        return self.ejector.isEjected(member)

    #: The older name (C{suspend-after-timeouts}).
    isSuspended = isEjected

    def _available(self, member: IMUX) -> bool:
        return (
            bool(self.running)
            and bool(member.ready)
            and self.isEnabled(member)
            and (self.ejector.panicking or not self.ejector.isEjected(member))
        )

    def isUsable(self, member: IMUX, tried: Tuple[IMUX, ...] = ()) -> bool:
        """
        Whether C{member} may be sent a request now; with C{tried} (the
        members that request was already refused by), as that request
        sees it.
        """
        if not self._available(member):
            return False
        if not self.isStalled(member):
            return True
        # stalled: used only when no other member can be
        return not any(
            m is not member
            and m not in tried
            and self._available(m)
            and not self.isStalled(m)
            and not _atCapacity(m)
            for m in self.members
        )

    def isStalled(self, member: IMUX) -> bool:
        """
        Whether C{member} holds C{maxUnanswered} requests sent since its
        last answer.
        """
        state = self._unanswered.get(member.name)
        if state is None or not 0 < self.maxUnanswered <= state[1]:
            return False
        if member.name not in self._stalled:
            self._stalled.add(member.name)
            self.counters["stalls"] += 1
            self.log.warn(
                "{pool}: {member} holds {count} requests and answered none of them; "
                "skipped while another member is usable",
                pool=self.name,
                member=member.name,
                count=state[1],
                event="pool.member_stalled",
            )
        return True

    def _memberChanged(self, member: IMUX, value: bool) -> None:
        if not value:
            self._enabled.discard(member.name)  # a reconnect must be enabled again
        self._changed()

    def _changed(self) -> None:
        ejector = self.ejector
        if ejector.panicking or ejector._out:
            inRotation = sum(
                1
                for m in self.members
                if self.running and m.ready and self.isEnabled(m) and not ejector.isEjected(m)
            )
            ejector.checkPanic(inRotation, len(self.members))
        self.ready.set(any(self.isUsable(m) for m in self.members))
        self._waiters.fire()

    def _nextChange(self) -> Deferred:
        return self._waiters.wait()

    # -- members that answer nothing (beyond jPOS) ---------------------------

    def _sent(self, member: IMUX) -> int:
        """
        A request went to C{member}: the number of its answers so far.
        """
        state = self._unanswered.get(member.name)
        if state is None:
            state = self._unanswered[member.name] = [0, 0]
        state[1] += 1
        return state[0]

    def _ended(self, member: IMUX, answers: int, answered: bool) -> None:
        """
        A request sent to C{member} when it had given C{answers} answers
        ended, C{answered} or not.
        """
        state = self._unanswered.get(member.name)
        if state is None:
            return
        if answered:
            state[0] += 1
            state[1] = 0
        elif state[0] == answers and state[1] > 0:
            state[1] -= 1
        if member.name in self._stalled and not self.isStalled(member):
            self._stalled.discard(member.name)
            self.log.info(
                "{pool}: {member} {why}; in rotation again",
                pool=self.name,
                member=member.name,
                why="answers again" if answered else "has fewer requests unanswered",
                event="pool.member_unstalled",
            )

    # -- ejection (beyond jPOS: see muxpool.mux._ejection) ----------------------

    def _learned(
        self, member: IMUX, seconds: float, now: float, response: Optional[Mapping[str, str]]
    ) -> None:
        """
        A request C{member} was asked ended after C{seconds}: answered with
        C{response}, or timed out (None).  The strategy (least-latency) and
        the ejection rules learn from it; a failure here is logged, never
        kept from the request, which has its outcome already.
        """
        try:
            if self.observe is not None:
                self.observe(member, seconds, now)
            if not self.ejection.enabled:
                return
            if response is None:
                self.ejector.timedOut(member)
            else:
                self.ejector.answered(member, response)
        except Exception as e:
            self._limiter.emit(
                self.log.error,
                ("learned", type(e)),
                "{pool}: noting how {member} did failed: {error}",
                pool=self.name,
                member=member.name,
                error=describeError(e),
            )

    def status(self) -> Dict[str, Any]:
        """
        The pool as an operator sees it: strategy, members in order with
        their state (up, down, disabled, draining, ejected, stalled), whether
        it panics, counters.
        """
        members = []
        for member in self.members:
            if self.isDraining(member):
                state = "draining"
            elif not self.isEnabled(member):
                state = "disabled"
            elif self.isEjected(member):
                state = "ejected"
            elif self.isStalled(member):
                state = "stalled"
            elif member.ready:
                state = "up"
            else:
                state = "down"
            members.append(
                {
                    "name": member.name,
                    "state": state,
                    "connected": bool(member.ready),
                    "usable": self.isUsable(member),
                    "enabled": self.isEnabled(member),
                    "in_flight": member.pendingCount(),
                    "requests": self.counters["requests"].get(member.name, 0),
                }
            )
        return {
            "kind": "pool",
            "name": self.name,
            "running": bool(self.running),
            "strategy": getattr(self.strategy, "name", type(self.strategy).__name__),
            "check_enabled": self.checkEnabled,
            "usable": bool(self.ready),
            "panicking": self.ejector.panicking,
            "in_flight": self._inFlight,
            "members": members,
            "counters": {k: v for k, v in self.counters.items() if k != "requests"},
            "latency": self.latency.summary(),
        }

    # -- IMUX -------------------------------------------------------------

    def isConnected(self) -> bool:
        return bool(self.ready)

    def pendingCount(self) -> int:
        return self._inFlight

    def select(self, message: Mapping[str, str], view: Optional[IPool] = None) -> Optional[IMUX]:
        """
        The member the strategy picks for C{message} (the fallback strategy
        when a custom one returns None), only if usable.

        @raise StrategyFailed: the strategy raised (logged, naming it).
        """
        view = view or self
        for strategy in (self.strategy, self.fallback):
            if strategy is None:
                continue
            try:
                member = strategy.select(view, message)
                if member is not None and view.isUsable(member):
                    return member
            except Exception as e:
                problem = f"strategy {describeCode(strategy)} failed: {describeError(e)}"
                self._limiter.emit(
                    self.log.error,
                    ("strategy", type(e)),
                    "{pool}: {problem}",
                    pool=self.name,
                    problem=problem,
                )
                raise StrategyFailed(f"{self.name}: {problem} - not sent") from None
        return None

    def send(self, message: Mapping[str, str]) -> None:
        """
        Write C{message} through a usable member now.

        @raise NotSent: no usable member, or the strategy failed.
        """
        member = self.select(message)
        if member is None:
            self.counters["no_mux"] += 1
            raise NoMUXAvailable(f"{self.name}: no MUX available")
        member.send(message)
        self._count(member)

    def _count(self, member: IMUX) -> None:
        requests = self.counters["requests"]
        requests[member.name] = requests.get(member.name, 0) + 1
        self.counters["tx"] += 1

    def request(self, message: Mapping[str, str], timeout: float) -> Deferred:
        """
        Send C{message} through a usable member; see L{IMUX.request}.
        Cancelling ends it as the member's request ends when cancelled
        (L{CancelledBeforeWrite} or L{CancelledAfterWrite}).
        """
        if self.atCapacity():
            self.counters["shed"] += 1
            return fail(NoCapacity.at(self.name, self._inFlight, self.maxInFlight))
        return self._start(message, timeout, None).outcome  # type: ignore[return-value]

    def requestTo(
        self, outcome: IOutcome, message: Mapping[str, str], timeout: float
    ) -> Optional[_Request]:
        """
        As L{request}, the outcome going to C{outcome}: see
        L{IDirectMUX.requestTo}.
        """
        if self.atCapacity():
            self.counters["shed"] += 1
            give(outcome, NoCapacity.at(self.name, self._inFlight, self.maxInFlight), self.name)
            return None
        state = self._start(message, timeout, outcome)
        return None if state.done else state

    def _start(
        self, message: Mapping[str, str], timeout: float, outcome: Optional[IOutcome]
    ) -> _Request:
        started = self.clock.seconds()
        state = _Request(self, message, outcome, started + timeout, started)
        self._inFlight += 1
        state.attempt(started)
        return state

    def atCapacity(self) -> bool:
        """
        Whether a new request would be refused for the pool's own
        C{maxInFlight}.
        """
        return self.maxInFlight is not None and self._inFlight >= self.maxInFlight

    def _finished(self) -> None:
        """
        A request ended: tell those waiting for the pool to drain.
        """
        if not self._inFlight:
            self._drainWaiters.fire()
