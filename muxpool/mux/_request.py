"""
One pool request (L{_Request}): select a member, wait for a change when
none is usable, send, and retry on a failure another member could succeed
at, within the request's deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Tuple, Union, cast

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool._support import Entry, describeCode, describeError, notAMessage
from muxpool.errors import (
    CancelledAfterWrite,
    CancelledBeforeWrite,
    LinkNotReady,
    NoCapacity,
    NoMUXAvailable,
    OutcomeUnknown,
    RequestError,
    RequestTimeout,
    StrategyFailed,
)
from muxpool.interfaces import IMUX, IDirectMUX, IOutcome, IPool
from muxpool.mux._outcome import give

if TYPE_CHECKING:
    from muxpool.mux._pool import MUXPool

#: Failures of a member that another member could succeed at.
RETRYABLE = (LinkNotReady, NoMUXAvailable, NoCapacity)

#: Seconds after a request's deadline at which a member that has not ended
#: it (a member in user code that never fires) is cancelled.
MEMBER_GRACE = 1.0


def _atCapacity(member: IMUX) -> bool:
    """
    Whether C{member} (a QMUX with C{max-in-flight}, or a pool) would refuse
    a request now for its capacity.
    """
    atCapacity = getattr(member, "atCapacity", None)
    return bool(atCapacity is not None and atCapacity())


@implementer(IPool)
class _Attempt:
    """
    The pool as one request sees it: members that already refused it, and
    members at their C{max-in-flight}, are not usable.
    """

    def __init__(self, pool: "MUXPool", tried: Tuple[IMUX, ...]) -> None:
        self.pool = pool
        self.tried = tried
        self.members = pool.members

    def isUsable(self, member: IMUX) -> bool:
        return (
            member not in self.tried
            and not _atCapacity(member)
            and self.pool.isUsable(member, self.tried)
        )

    def memberNamed(self, name: str) -> Optional[IMUX]:
        return self.pool.memberNamed(name)


@implementer(IOutcome)
class _Request:
    """
    One pool request: select, wait for a change, send, retry on a failure
    another member could succeed at.  It is the L{IOutcome} of the member
    asked, when the member is an L{IDirectMUX}; else it waits on the
    member's Deferred.  Its C{cancel} ends it (L{MUXPool.requestTo}'s
    handle).
    """

    __slots__ = (
        "pool",
        "message",
        "deadline",
        "tried",
        "outcome",
        "started",
        "waiting",
        "entry",
        "member",
        "inner",
        "refused",
        "cancelled",
        "done",
        "answers",
        "sentAt",
    )

    def __init__(
        self,
        pool: MUXPool,
        message: Mapping[str, str],
        outcome: Optional[IOutcome],
        deadline: float,
        started: float,
    ) -> None:
        self.pool = pool
        self.message = message
        self.deadline = deadline
        # members asked and refused it, added on a retry: a request asks one member
        self.tried: Tuple[IMUX, ...] = ()
        # the caller's, or for MUXPool.request a Deferred that cancels it
        # (a bound method: smaller than a closure)
        self.outcome: Union[IOutcome, Deferred] = (
            Deferred(self.cancel) if outcome is None else outcome
        )
        self.started = started
        self.waiting: Optional[Deferred] = None
        self.entry: Optional[Entry] = None  # in pool._deadlines while waiting or asking
        self.member: Optional[IMUX] = None  # the member asked, until it answers
        self.inner: Optional[Any] = None  # what cancels the member's request
        self.refused: Optional[Failure] = None
        self.cancelled = False
        self.done = False
        self.answers = 0  # the member's answers when this was sent to it
        self.sentAt = started  # when the member was last asked

    def attempt(self, now: Optional[float] = None) -> None:
        """
        Select a member and ask it, or wait for a change.  C{now}: the
        clock's time, given on the first attempt (the time it started).
        """
        if self.done:
            return
        pool = self.pool
        if not pool.running:
            self.finish(self.refused or NoMUXAvailable(f"{pool.name}: not running - not sent"))
            return
        if now is None:
            now = pool.clock.seconds()
        remaining = self.deadline - now
        if remaining <= 0:
            self._noMUX()
            return
        view = _Attempt(pool, self.tried) if self.tried or pool.limited else None
        try:
            member = pool.select(self.message, view)
        except StrategyFailed as e:
            self.finish(e)
            return
        if member is None and (pool.limited or self.refused is not None) and self._everyOneFull():
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
        pool._count(member)
        if pool.maxUnanswered:
            self.answers = pool._sent(member)
        if self.entry is not None:
            pool._deadlines.remove(self.entry)
            self.entry = None
        self.member = member
        self.sentAt = now  # on a first attempt, the very float it started at: memory counts
        if IDirectMUX.providedBy(member):
            # Its outcome comes straight to us: no Deferred or callbacks.
            # muxpool's own MUXes end every request by its deadline: no
            # timer here either; another one is watched as a Deferred is.
            outcome: IOutcome = self
            if not getattr(member, "endsRequestsByDeadline", False):
                self.entry = pool._deadlines.add(self.deadline + MEMBER_GRACE, self)
                outcome = _MemberOutcome(self, member)  # user code: once, and in time
            try:
                inner = member.requestTo(outcome, self.message, remaining)
            except Exception as e:
                if self.done or self.member is not member:
                    pool.log.error(
                        "{pool}: member {member} failed after it ended a request: {error}",
                        pool=pool.name,
                        member=describeCode(member),
                        error=describeError(e),  # never its text: it may hold card data
                    )
                else:
                    self.errback(Failure())
                return
            if inner is not None and self.member is member and not self.done:
                self.inner = inner  # else it has ended (and maybe been retried) already
            return
        # A member that never ends the request (user code) is cancelled a
        # little after the deadline: no request waits for ever.
        self.entry = pool._deadlines.add(self.deadline + MEMBER_GRACE, self)
        # Kept even when it has fired: it may be paused on a Deferred it
        # chained (a member that waits, then asks a QMUX); the callbacks
        # clear it.
        self.inner = deferred = maybeDeferred(member.request, self.message, remaining)
        deferred.addCallbacks(self.callback, self.errback)

    def _everyOneFull(self) -> bool:
        """
        When every member that could take it is at its C{max-in-flight}:
        the request ends at once with L{NoCapacity} (True), rather than
        waiting for one into a timeout.
        """
        pool = self.pool
        full = [m for m in pool.members if pool.isUsable(m, self.tried) and m not in self.tried]
        refusedFull = self.refused is not None and self.refused.check(NoCapacity) is not None
        if not (full or refusedFull) or not all(_atCapacity(m) for m in full):
            return False
        pool.counters["shed"] += 1
        self.finish(NoCapacity(f"{pool.name}: every member is at its max-in-flight - not sent"))
        return True

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
        elif self.member is not None:
            self.pool.log.error(
                "{pool}: member {member} did not end a request {grace:g}s after its deadline; "
                "cancelling it",
                pool=self.pool.name,
                member=describeCode(self.member),
                grace=MEMBER_GRACE,
            )
            member = self.member
            if self.inner is not None:
                self.inner.cancel()  # its outcome arrives through errback...
            if not self.done and self.member is member:  # ...or it gave none, or no handle
                self.errback(
                    CancelledAfterWrite(
                        f"{self.pool.name}: {member.name} never ended it; outcome unknown"
                    )
                )

    def _noMUX(self) -> None:
        self.pool.counters["no_mux"] += 1
        after = f" (last: {self.refused.value})" if self.refused is not None else ""
        self.finish(
            NoMUXAvailable(
                f"{self.pool.name}: no MUX available before the deadline{after} - not sent"
            )
        )

    def _memberEnded(self, answered: bool = False) -> None:
        member = self.member
        if member is not None and self.pool.maxUnanswered:
            self.pool._ended(member, self.answers, answered)
        self.inner = self.member = None
        if self.entry is not None:
            self.pool._deadlines.remove(self.entry)
            self.entry = None

    def callback(self, response: Mapping[str, str]) -> None:
        """
        The member asked answered.
        """
        member = self.member
        if member is None or self.done:
            return  # not ours to take: a member's second outcome
        wrong = notAMessage(response)  # a member in user code may answer anything
        if wrong is not None:
            self.errback(wrong)
            return
        self._memberEnded(answered=True)
        pool = self.pool
        pool.counters["rx"] += 1
        now = pool.clock.seconds()
        pool.latency.record(now - self.started)
        self.finish(response)  # its outcome first, whatever the bookkeeping does
        pool._learned(member, now - self.sentAt, now, response)

    def errback(self, error: Union[BaseException, Failure]) -> None:
        """
        The member asked ended the request without an answer.
        """
        member = self.member
        if member is None or self.done:
            return  # not ours to take: a member's second outcome
        failure = error if isinstance(error, Failure) else Failure(error)
        self._memberEnded()
        if failure.check(*RETRYABLE) and not self.cancelled:
            self.refused = failure  # another member could succeed
            self.tried += (member,)
            self.attempt()
            return
        timedOut = failure.check(RequestTimeout) is not None
        if timedOut:
            pass  # learned from below, once it has its outcome
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
        if timedOut:  # as slow as the whole wait
            pool = self.pool
            now = pool.clock.seconds()
            pool._learned(member, now - self.sentAt, now, None)

    def cancel(self, result: Optional[Deferred] = None) -> None:
        """
        The caller cancelled it: end as the member request ends when
        cancelled, or "not sent" if no member was asked yet.
        """
        self.cancelled = True
        if self.inner is not None:
            self.inner.cancel()  # its outcome arrives through errback
        elif self.member is not None:  # asked, and it gave no handle: it may have it
            self.errback(
                CancelledAfterWrite(
                    f"{self.pool.name}: cancelled after {self.member.name} was asked; "
                    "outcome unknown"
                )
            )
        else:
            self.finish(
                CancelledBeforeWrite(f"{self.pool.name}: cancelled before sending - not sent")
            )

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
        give(
            self.outcome,
            cast(Union[Mapping[str, str], BaseException, Failure], outcome),
            self.pool.name,
        )
        self.pool._finished()


@implementer(IOutcome)
class _MemberOutcome:
    """
    The outcome a direct MUX in user code is given for one attempt of a
    pool request: its first outcome goes to the request, if the request is
    still waiting for that member; a second one, or one after the request
    moved on (timed out, cancelled, tried elsewhere), is dropped, as a
    Deferred drops what comes after its result.
    """

    __slots__ = ("request", "member")

    def __init__(self, request: _Request, member: IMUX) -> None:
        self.request: Optional[_Request] = request
        self.member = member

    def _take(self) -> Optional[_Request]:
        request, self.request = self.request, None
        if request is None or request.done or request.member is not self.member:
            return None
        return request

    def callback(self, response: Mapping[str, str]) -> None:
        request = self._take()
        if request is not None:
            request.callback(response)

    def errback(self, error: Union[BaseException, Failure]) -> None:
        request = self._take()
        if request is not None:
            request.errback(error)
