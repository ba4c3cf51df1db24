"""
MUXPool: a MUX over an ordered list of member MUXes, each request sent to a
usable member chosen by a strategy.

A member is usable when it is ready, enabled and not suspended.  With no
usable member the request waits for a change (never polls) until its
deadline, and nothing is written after the deadline.  A member's "link not
ready" or "no member available" is retried on another member within the
same deadline; nothing else is (a duplicate key must not go out on a second
link), and an "outcome unknown" never is: payments are not idempotent.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Set, Tuple

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool._support import (
    NO_KEYWORDS,
    DeadlineQueue,
    Entry,
    RateLimiter,
    Readiness,
    Waiters,
    describeCode,
    describeError,
    notAMessage,
)
from muxpool.errors import (
    CancelledAfterWrite,
    CancelledBeforeWrite,
    LinkNotReady,
    NoMUXAvailable,
    OutcomeUnknown,
    RequestError,
    RequestTimeout,
    StrategyFailed,
)
from muxpool.interfaces import IMUX, IPool, IProbe, IStrategy
from muxpool.mux._latency import LatencySummary
from muxpool.mux._strategies import strategyByName

#: Failures of a member that another member could succeed at.
RETRYABLE = (LinkNotReady, NoMUXAvailable)

#: Seconds after a request's deadline at which a member that has not ended
#: it (a member in user code that never fires) is cancelled.
MEMBER_GRACE = 1.0


def _memberNames(member: IMUX) -> tuple:
    link = getattr(member, "link", None)
    return (member.name, getattr(link, "name", None))


@implementer(IPool)
class _Attempt:
    """
    The pool as one request's retries see it: members already tried for it
    are not usable.
    """

    def __init__(self, pool: "MUXPool", tried: Tuple[int, ...]) -> None:
        self.pool = pool
        self.tried = tried
        self.members = pool.members

    def isUsable(self, member: IMUX) -> bool:
        return id(member) not in self.tried and self.pool.isUsable(member)

    def memberNamed(self, name: str) -> Optional[IMUX]:
        return self.pool.memberNamed(name)


@implementer(IMUX, IPool)
class MUXPool(Service):
    """
    A pool of MUXes; itself an L{IMUX}, so pools nest and L{Forward} can use
    one.  It watches its members from C{startService} to C{stopService}.

    @param checkEnabled: jPOS's C{check-enabled}: a member is usable only
        once enabled (L{enable}), and a disconnect of the member clears that
        (as jPOS ties the C{NAME.enabled} entry to the C{ready} entry its
        channel replaces on every connect).
    @param suspendAfterTimeouts: beyond jPOS, off (0) by default: a member
        whose requests time out this many times in a row is taken out of
        rotation until its link proves its peer answers again (an echo or
        sign-on; see L{IProbe}).  A hung issuer whose kernel still accepts
        connections then costs at most that many requests.

    @ivar counters: C{requests} per member name, C{no_mux}, C{retries},
        C{tx}, C{rx}, C{suspensions}.
    @ivar latency: the pool's own L{LatencySummary} (selection and waiting
        included).
    """

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
    ) -> None:
        self.setName(name)
        self.clock = clock
        self.strategy = strategy if strategy is not None else strategyByName(None)
        self.fallback = fallback
        self.checkEnabled = checkEnabled
        self.suspendAfterTimeouts = suspendAfterTimeouts
        self.ready = Readiness(False, f"{name} ready state")
        self.latency = LatencySummary()
        # "requests" holds a count per member name; the others are counts.
        self.counters: Dict[str, Any] = {
            "requests": {},
            "no_mux": 0,
            "retries": 0,
            "tx": 0,
            "rx": 0,
            "suspensions": 0,
        }
        self.members: tuple = ()
        self._watching: Dict[IMUX, Callable[[bool], None]] = {}
        self._disabled: Set[str] = set()
        self._draining: Set[str] = set()
        self._enabled: Set[str] = set()
        self._timeouts: Dict[str, int] = {}
        self._suspended: Dict[str, Optional[Deferred]] = {}
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
        for name in list(self._suspended):
            self._resume(name, log=False)
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
        self._resume(name, log=False)
        self._timeouts.pop(name, None)

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

    def isSuspended(self, member: IMUX) -> bool:
        return member.name in self._suspended

    def isUsable(self, member: IMUX) -> bool:
        return (
            bool(self.running)
            and bool(member.ready)
            and self.isEnabled(member)
            and member.name not in self._suspended
        )

    def _memberChanged(self, member: IMUX, value: bool) -> None:
        if not value:
            self._enabled.discard(member.name)  # a reconnect must be enabled again
        self._changed()

    def _changed(self) -> None:
        self.ready.set(any(self.isUsable(m) for m in self.members))
        self._waiters.fire()

    def _nextChange(self) -> Deferred:
        return self._waiters.wait()

    # -- suspension (beyond jPOS) ----------------------------------------------

    def _answeredBy(self, member: IMUX) -> None:
        if self._timeouts:
            self._timeouts.pop(member.name, None)

    def _timedOut(self, member: IMUX) -> None:
        if not self.suspendAfterTimeouts or member.name in self._suspended:
            return
        count = self._timeouts[member.name] = self._timeouts.get(member.name, 0) + 1
        if count < self.suspendAfterTimeouts or member not in self.members:
            return
        link = getattr(member, "link", None)
        if not IProbe.providedBy(link):
            self._limiter.emit(
                self.log.warn,
                ("cannot suspend", member.name),
                "{pool}: {member}: {count} requests in a row timed out, but its link "
                "cannot be probed, so it stays in rotation",
                pool=self.name,
                member=member.name,
                count=count,
            )
            return
        self.counters["suspensions"] += 1
        self.log.warn(
            "{pool}: {member}: {count} requests in a row timed out; out of rotation until "
            "{link} proves its peer answers (an echo or a sign-on)",
            pool=self.name,
            member=member.name,
            count=count,
            link=getattr(link, "name", link),
        )
        self._probe(member, link)
        self._changed()

    def _probe(self, member: IMUX, link: IProbe) -> None:
        """
        Wait for C{link} to prove its peer answers; if that wait ends
        otherwise (the link stopped: its channel was redeployed), wait on
        the member's link as it is now.
        """
        probe = link.probe()
        self._suspended[member.name] = probe
        probe.addCallbacks(
            lambda _: self._resume(member.name), lambda failure: self._probeEnded(member, probe)
        )

    def _probeEnded(self, member: IMUX, probe: Deferred) -> None:
        if self._suspended.get(member.name) is not probe or not self.running:
            return  # resumed, forgotten or stopped: nothing to wait for
        link = getattr(member, "link", None)
        if IProbe.providedBy(link):
            self._probe(member, link)

    def _resume(self, name: str, log: bool = True) -> None:
        if name not in self._suspended:
            return
        probe = self._suspended.pop(name)
        self._timeouts.pop(name, None)
        if probe is not None and not probe.called:
            probe.cancel()
        if log:
            self.log.info(
                "{pool}: {member} answers again; back in rotation", pool=self.name, member=name
            )
            self._changed()

    def status(self) -> Dict[str, Any]:
        """
        The pool as an operator sees it: strategy, members in order with
        their state (up, down, disabled, draining, suspended), counters.
        """
        members = []
        for member in self.members:
            if self.isDraining(member):
                state = "draining"
            elif not self.isEnabled(member):
                state = "disabled"
            elif self.isSuspended(member):
                state = "suspended"
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
        started = self.clock.seconds()
        state = _Request(self, message, started + timeout, started)
        self._inFlight += 1
        state.attempt()
        return state.result

    def _finished(self) -> None:
        """
        A request ended: tell those waiting for the pool to drain.
        """
        if not self._inFlight:
            self._drainWaiters.fire()


class _Request:
    """
    One pool request: select, wait for a change, send, retry on a failure
    another member could succeed at.
    """

    __slots__ = (
        "pool",
        "message",
        "deadline",
        "tried",
        "result",
        "started",
        "waiting",
        "entry",
        "member",
        "inner",
        "refused",
        "cancelled",
        "done",
    )

    def __init__(
        self, pool: MUXPool, message: Mapping[str, str], deadline: float, started: float
    ) -> None:
        self.pool = pool
        self.message = message
        self.deadline = deadline
        self.tried: Tuple[int, ...] = ()  # ids of members asked; a tuple: most have one
        self.result: Deferred = Deferred(self.cancel)  # a bound method: smaller than a closure
        self.started = started
        self.waiting: Optional[Deferred] = None
        self.entry: Optional[Entry] = None  # in pool._deadlines while waiting or asking
        self.member: Optional[IMUX] = None  # the member asked, until it answers
        self.inner: Optional[Deferred] = None
        self.refused: Optional[Failure] = None
        self.cancelled = False
        self.done = False

    def attempt(self) -> None:
        if self.done:
            return
        pool = self.pool
        if not pool.running:
            self.finish(self.refused or NoMUXAvailable(f"{pool.name}: not running - not sent"))
            return
        remaining = self.deadline - pool.clock.seconds()
        if remaining <= 0:
            self._noMUX()
            return
        try:
            member = pool.select(self.message, _Attempt(pool, self.tried) if self.tried else None)
        except StrategyFailed as e:
            self.finish(e)
            return
        if member is None:
            self.waiting = pool._nextChange()
            self.waiting.addCallbacks(self._changed, lambda failure: None)  # cancelled
            if self.entry is None:
                self.entry = pool._deadlines.add(self.deadline, self)
            return
        if self.refused is not None:
            pool.counters["retries"] += 1
            pool.log.info(
                "{pool}: {error}; trying {member}",
                pool=pool.name,
                error=str(self.refused.value),
                member=member.name,
            )
        self.tried += (id(member),)
        pool._count(member)
        if self.entry is not None:
            pool._deadlines.remove(self.entry)
        # A member that never ends the request (user code) is cancelled a
        # little after the deadline: no request waits for ever.
        self.entry = pool._deadlines.add(self.deadline + MEMBER_GRACE, self)
        self.member = member
        # Kept even when it has fired: it may be paused on a Deferred it
        # chained (a member that waits, then asks a QMUX); the callbacks
        # clear it.
        self.inner = inner = maybeDeferred(member.request, self.message, remaining)
        args = (member,)
        inner.addCallbacks(self._answered, self._failed, args, NO_KEYWORDS, args, NO_KEYWORDS)

    def _changed(self, _: object) -> None:
        # Something changed: a member that refused (its link was down) may
        # be usable now, and nothing was sent to it.
        self.waiting = None
        self.tried = ()
        self.attempt()

    def expired(self) -> None:
        """
        Its entry in the pool's deadlines came due: no member before the
        deadline, or the member asked has not ended it by then.
        """
        self.entry = None
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.cancel()
            self._noMUX()
        elif self.inner is not None:
            self.pool.log.error(
                "{pool}: member {member} did not end a request {grace:g}s after its deadline; "
                "cancelling it",
                pool=self.pool.name,
                member=describeCode(self.member),
                grace=MEMBER_GRACE,
            )
            self.inner.cancel()  # its outcome arrives through _failed

    def _noMUX(self) -> None:
        self.pool.counters["no_mux"] += 1
        after = f" (last: {self.refused.value})" if self.refused is not None else ""
        self.finish(
            NoMUXAvailable(
                f"{self.pool.name}: no MUX available before the deadline{after} - not sent"
            )
        )

    def _memberEnded(self) -> None:
        self.inner = self.member = None
        if self.entry is not None:
            self.pool._deadlines.remove(self.entry)
            self.entry = None

    def _answered(self, response: Mapping[str, str], member: IMUX) -> None:
        wrong = notAMessage(response)  # a member in user code may answer anything
        if wrong is not None:
            self._failed(wrong, member)
            return
        self._memberEnded()
        pool = self.pool
        pool.counters["rx"] += 1
        pool.latency.record(pool.clock.seconds() - self.started)
        pool._answeredBy(member)
        self.finish(response)

    def _failed(self, failure: Failure, member: IMUX) -> None:
        self._memberEnded()
        if self.done:
            return
        if failure.check(*RETRYABLE) and not self.cancelled:
            self.refused = failure  # another member could succeed
            self.attempt()
            return
        if failure.check(RequestTimeout):
            self.pool._timedOut(member)
        elif failure.check(CancelledError):
            # A member that does not know our outcomes: it was asked, so the
            # issuer may have the message.
            failure = Failure(
                CancelledAfterWrite(
                    f"{self.pool.name}: cancelled after {member.name} was asked; outcome unknown"
                )
            )
        elif not failure.check(RequestError):
            assert failure.value is not None  # a Failure holds its exception
            self.pool.log.error(
                "{pool}: member {member} failed: {error}",
                pool=self.pool.name,
                member=describeCode(member),
                error=describeError(failure.value),
            )
            failure = Failure(
                OutcomeUnknown(
                    f"{self.pool.name}: member {member.name} failed ({type(failure.value).__name__}); "
                    "outcome unknown"
                )
            )
        self.finish(failure)

    def cancel(self, result: Optional[Deferred] = None) -> None:
        """
        The caller cancelled C{result}: end as the member request ends when cancelled,
        or "not sent" if no member was asked yet.
        """
        self.cancelled = True
        if self.inner is not None:
            self.inner.cancel()  # its outcome arrives through _failed
            return
        self.finish(CancelledBeforeWrite(f"{self.pool.name}: cancelled before sending - not sent"))

    def finish(self, outcome: object) -> None:
        if self.done:
            return
        self.done = True
        if self.entry is not None:
            self.pool._deadlines.remove(self.entry)
            self.entry = None
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.cancel()
        self.pool._inFlight -= 1
        if isinstance(outcome, (Exception, Failure)):
            self.result.errback(outcome)
        else:
            self.result.callback(outcome)
        self.pool._finished()
