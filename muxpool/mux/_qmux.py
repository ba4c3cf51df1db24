"""
QMUX: request/response matching over one link.

A request's key is built exactly as jPOS's QMUX builds it (L{KeyBuilder});
pending requests live in a table keyed by it, as Twisted's DNS client keeps
its pending queries, and their deadlines in one L{DeadlineQueue}.  Every request ends
in exactly one outcome (a response, L{NotSent}, or L{OutcomeUnknown}), and
every ending goes through one method, L{QMUX._complete}, which ends a
request once only, whatever order a response, a timer, a lost link and a
cancellation arrive in.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import (
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Type,
    Union,
    cast,
)

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
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
    CancelledAfterWrite,
    CancelledBeforeWrite,
    DuplicateKey,
    LinkLost,
    LinkNotReady,
    MissingKey,
    NoCapacity,
    NotSent,
    OutcomeUnknown,
    RequestError,
    RequestTimeout,
)
from muxpool.interfaces import (
    IDirectMUX,
    ILink,
    IOutcome,
    IReconnect,
    IRequestListener,
    ISource,
)
from muxpool.iso import binaryFieldsOf, isResponse, maskMessage
from muxpool.listeners import ListenerFailed, offer
from muxpool.mux._keys import KeyBuilder
from muxpool.mux._latency import LatencySummary
from muxpool.mux._outcome import give
from muxpool.mux._pending import _Pending

#: Responses in a row that match nothing, while requests wait, before a
#: link is taken as out of step (see L{QMUX}).
UNMATCHED_LIMIT = 16

#: What C{<unhandled>} may name: a callable given the message, or a listener.
UnhandledHandler = Union[Callable[[Mapping[str, str]], None], IRequestListener]


@implementer(IDirectMUX, ISource)
class QMUX(Service):
    """
    Matches responses to requests over one L{ILink}.

    Like every muxpool service it holds nothing until started: it listens to
    its link from C{startService}, and C{stopService} stops taking
    requests, lets those in flight end, then lets go of the link.

    @param unhandled: where messages that match no request and that no
        request listener takes go (jPOS's C{<unhandled>}): a callable given
        the message, or an L{IRequestListener}.
    @param maxInFlight: beyond jPOS, off (None) by default: at this many
        pending requests a new one is refused at once with L{NoCapacity}
        (counted as C{shed}), not queued into a timeout.
    @param unmatchedLimit: after this many responses in a row that match
        no request (pending or timed out) while requests are pending, the
        link's stream is taken as out of step (every answer on it lost) and
        a link that can (L{IReconnect}) reconnects; 0 never.
    @ivar latency: a L{LatencySummary} of answered requests.
    """

    #: It ends every request by its deadline by itself (a pool over it
    #: needs no timer of its own for it; see L{IDirectMUX}).
    endsRequestsByDeadline = True

    log = Logger()
    lateMemory = 10000
    name: str

    def __init__(
        self,
        name: str,
        link: Optional[ILink],
        clock: IReactorTime,
        keyBuilder: Optional[KeyBuilder] = None,
        ignoreRC: Iterable[str] = (),
        returnRejects: bool = False,
        listeners: Iterable[IRequestListener] = (),
        unhandled: Optional[UnhandledHandler] = None,
        unmatchedLimit: int = UNMATCHED_LIMIT,
        maxInFlight: Optional[int] = None,
    ) -> None:
        self.setName(name)
        self.maxInFlight = maxInFlight
        self.unmatchedLimit = unmatchedLimit
        self._unmatchedRun = 0
        self.clock = clock
        self.keys = keyBuilder or KeyBuilder()
        self.ignoreRC = frozenset(ignoreRC)
        self.returnRejects = returnRejects
        self.listeners: List[IRequestListener] = list(listeners)
        self.unhandled = unhandled
        self.ready = Readiness(False, f"{name} ready state")
        self.latency = LatencySummary()
        self._pending: Dict[str, _Pending] = {}
        self._waiting: "OrderedDict[str, _Pending]" = OrderedDict()
        self._expired: "OrderedDict[str, None]" = OrderedDict()
        self._sentOnly: "OrderedDict[str, None]" = OrderedDict()
        self._counts: Dict[str, float] = dict.fromkeys(
            (
                "tx",
                "rx",
                "tx_expired",
                "rx_expired",
                "rx_unhandled",
                "rx_forwarded",
                "rx_late",
                "rx_ignored",
                "shed",
            ),
            0,
        )
        self._counts["last_txn"] = 0.0
        self.link: Optional[ILink] = link
        self._attached: Dict[ILink, Callable] = {}
        self._written: Dict[ILink, int] = {}
        self._drainWaiters: Dict[Optional[ILink], Waiters] = {}
        self._limiter = RateLimiter(clock=clock)
        self._deadlines: DeadlineQueue[_Pending] = DeadlineQueue(clock, self._expire)

    def __repr__(self) -> str:
        return f"<QMUX {self.name}>"

    # -- service ------------------------------------------------------------

    def startService(self) -> None:
        """
        Listen to the link: its responses, its losses and its ready state.
        """
        Service.startService(self)
        if self.link is not None:
            self._attach(self.link)
            self.link.ready.addObserver(self._linkReady)
        self._linkReady(self._linkIsReady())

    def stopService(self) -> Deferred:
        """
        Take no more requests; requests waiting for the link end "not sent"
        at once; fires once those written have their outcomes (each is
        bounded by its own deadline), and then lets go of every link.
        """
        Service.stopService(self)
        if self.link is not None:
            self.link.ready.removeObserver(self._linkReady)
        self.ready.set(False)
        for pending in list(self._waiting.values()):
            self._counts["tx_expired"] += 1
            self._complete(
                pending,
                LinkNotReady(
                    f"{self.name}: stopped before the link was ready "
                    f"({self.keys.describe(pending.message)}) - not sent"
                ),
            )
        return self.whenDrained().addCallback(self._detachAll)

    def _detachAll(self, result: object = None) -> object:
        if not self.running:
            for link in list(self._attached):
                self.detachLink(link)
        return result

    # -- the link ---------------------------------------------------------

    def setLink(self, link: Optional[ILink], keepPrevious: bool = False) -> None:
        """
        Send through C{link} from now on.  Requests waiting for a ready link
        go out on it when it is ready.  With C{keepPrevious}, the previous
        link stays attached (its responses still match, its loss still fails
        what was written on it) until L{detachLink}: that is how a link is
        replaced with no request lost.
        """
        old = self.link
        if old is not None and self.running:
            old.ready.removeObserver(self._linkReady)
        if old is not None and not keepPrevious:
            self.detachLink(old)
        self.link = link
        if self.running:
            if link is not None:
                self._attach(link)
                link.ready.addObserver(self._linkReady)
            self._linkReady(self._linkIsReady())

    def _attach(self, link: ILink) -> None:
        if link not in self._attached:
            lost = partial(self._linkLost, link)
            self._attached[link] = lost
            link.addReceiver(self.messageReceived)
            link.addLossObserver(lost)

    @property
    def links(self) -> tuple:
        """
        Every link attached: the current one and any still draining.
        """
        return tuple(self._attached)

    def detachLink(self, link: ILink) -> None:
        """
        Stop listening to C{link} (a previous link, once drained).
        """
        lost = self._attached.pop(link, None)
        if lost is not None:
            link.removeReceiver(self.messageReceived)
            link.removeLossObserver(lost)

    def _linkIsReady(self) -> bool:
        return bool(self.running and self.link is not None and self.link.ready)

    def _linkReady(self, value: bool) -> None:
        ready = bool(value) and self._linkIsReady()
        self.ready.set(ready)
        if ready:
            self._flush()

    def _linkLost(self, link: ILink, reason: Optional[Failure] = None) -> None:
        self._unmatchedRun = 0  # a new connection is a new stream
        for pending in [p for p in self._pending.values() if p.link is link]:
            if not pending.done:
                self._unknown(pending, LinkLost, "link lost after the request was written")

    def _unknown(self, pending: _Pending, error: Type[OutcomeUnknown], why: str) -> None:
        """
        End a written request as "outcome unknown"; remember its key so a
        late response is counted as late.
        """
        if pending.done:
            return
        self._remember(pending.key)
        self._counts["rx_expired"] += 1
        self._complete(
            pending,
            error(f"{self.name}: {why} ({self.keys.describe(pending.message)}); outcome unknown"),
        )

    def pendingOn(self, link: Optional[ILink] = None) -> int:
        """
        Requests in flight written on C{link} (all pending ones if None).
        """
        if link is None:
            return len(self._pending)
        return self._written.get(link, 0)

    def whenDrained(self, link: Optional[ILink] = None) -> Deferred:
        """
        Fires when L{pendingOn}C{(link)} is zero (at once if it is now).
        """
        if not self.pendingOn(link):
            return succeed(None)
        return self._drainWaiters.setdefault(link, Waiters()).wait()

    def _drained(self, link: Optional[ILink]) -> None:
        waiters = self._drainWaiters.pop(link, None)
        if waiters is not None:
            waiters.fire()

    # -- IMUX ---------------------------------------------------------------

    def isConnected(self) -> bool:
        return bool(self.ready)

    def pendingCount(self) -> int:
        return len(self._pending)

    @property
    def counters(self) -> Dict[str, float]:
        """
        jPOS's counters, now: C{tx}, C{rx}, C{tx_expired}, C{tx_pending}
        (waiting for the link), C{rx_expired}, C{rx_pending} (written, not
        answered), C{rx_unhandled}, C{rx_forwarded}, C{last_txn}, plus
        C{rx_late}, C{rx_ignored} (responses whose 39 is in C{ignore-rc}),
        C{shed} (refused at C{max-in-flight}) and C{connected}.
        """
        values = dict(self._counts)
        values["tx_pending"] = len(self._waiting)
        values["rx_pending"] = len(self._pending) - len(self._waiting)
        values["connected"] = self.isConnected()
        return values

    def atCapacity(self) -> bool:
        """
        Whether a new request would be refused for C{maxInFlight}.
        """
        return self.maxInFlight is not None and len(self._pending) >= self.maxInFlight

    def send(self, message: Mapping[str, str]) -> None:
        """
        Write C{message} now, expecting no answer.

        @raise NotSent: if the link is not ready or the message cannot be packed.
        """
        link = self.link
        if not self._linkIsReady() or link is None:
            raise LinkNotReady(f"{self.name}: link not ready")
        link.send(message)
        self._counts["tx"] += 1
        if self.unmatchedLimit:
            # its answer, if one comes, matches nothing and is no sign
            # that the stream is out of step
            try:
                self._sentOnly[self.keys.key(message)] = None
            except MissingKey:
                pass
            if len(self._sentOnly) > self.lateMemory:
                self._sentOnly.popitem(last=False)

    def request(self, message: Mapping[str, str], timeout: float) -> Deferred:
        """
        Send C{message}; the Deferred fires with the response or fails with
        L{NotSent} / L{OutcomeUnknown}.  C{timeout} is in seconds; the
        message is never written after it has passed.

        Cancelling the Deferred ends the request with
        L{CancelledBeforeWrite} (a L{NotSent}) if it was not written yet,
        else L{CancelledAfterWrite} (an L{OutcomeUnknown}); a response that
        still arrives is counted as late.
        """
        key = self._admit(message)
        if not isinstance(key, str):
            return fail(key)
        return self._start(key, message, timeout, None).outcome  # type: ignore[return-value]

    def requestTo(
        self, outcome: IOutcome, message: Mapping[str, str], timeout: float
    ) -> Optional[_Pending]:
        """
        As L{request}, the outcome going to C{outcome}: see
        L{IDirectMUX.requestTo}.
        """
        key = self._admit(message)
        if not isinstance(key, str):
            give(outcome, key, self.name)
            return None
        pending = self._start(key, message, timeout, outcome)
        return None if pending.done else pending

    def _admit(self, message: Mapping[str, str]) -> Union[str, NotSent]:
        """
        C{message}'s key, or why it is refused at once (not sent).
        """
        if not self.running:
            return LinkNotReady(f"{self.name}: not running - not sent")
        if self.atCapacity():
            self._counts["shed"] += 1
            return NoCapacity.at(self.name, len(self._pending), self.maxInFlight)
        try:
            key = self.keys.key(message)
        except MissingKey as e:
            return MissingKey(f"{self.name}: {e}")
        if key in self._pending:
            return DuplicateKey(
                f"{self.name}: duplicate key ({self.keys.describe(message)}) "
                "already pending - not sending"
            )
        return key

    def _start(
        self, key: str, message: Mapping[str, str], timeout: float, outcome: Optional[IOutcome]
    ) -> _Pending:
        """
        Put a request L{_admit} let through in the table, and write it if
        the link is ready.
        """
        now = self.clock.seconds()
        pending = _Pending(self, key, message, outcome, now)
        self._pending[key] = pending
        pending.entry = self._deadlines.add(now + max(0.0, timeout), pending)
        if self._linkIsReady():
            self._write(pending)
        else:
            self._waiting[key] = pending
        return pending

    # -- the table ------------------------------------------------------------

    def _flush(self) -> None:
        while self._waiting and self._linkIsReady():
            _, pending = self._waiting.popitem(last=False)
            self._write(pending)

    def _write(self, pending: _Pending) -> None:
        self._waiting.pop(pending.key, None)
        if self.clock.seconds() >= pending.deadline:
            # Its timer is due in this very turn: never write after the deadline.
            self._expire(pending, "the deadline passed before it could be written")
            return
        link = self.link
        assert link is not None  # written only while the link is ready
        # Written before send() returns: a link may answer synchronously,
        # or be lost inside send() (the request then already has its outcome).
        pending.link = link
        self._written[link] = self._written.get(link, 0) + 1
        self._counts["tx"] += 1
        try:
            link.send(pending.message)
        except NotSent as e:
            if not pending.done:
                self._counts["tx"] -= 1
                self._unwrite(pending)
                self._complete(pending, NotSent(f"{self.name}: {e}") if type(e) is NotSent else e)
        except Exception as e:
            # A link that failed in an unknown way may have written part of
            # the message: the issuer may have it.
            self.log.error(
                "{mux}: link {link} failed while writing: {error}",
                mux=self.name,
                link=describeCode(link),
                error=describeError(e),
            )
            if not pending.done:
                self._unknown(
                    pending, OutcomeUnknown, f"link failed while writing ({type(e).__name__})"
                )

    def _unwrite(self, pending: _Pending) -> None:
        link, pending.link = pending.link, None
        if link is None:
            return
        self._written[link] -= 1
        if not self._written[link]:
            del self._written[link]
            self._drained(link)

    def _complete(self, pending: _Pending, result: Union[Mapping[str, str], BaseException]) -> None:
        """
        End C{pending} with C{result} (a response, or an exception): once.
        """
        if pending.done:
            return
        pending.done = True
        if self._pending.get(pending.key) is pending:
            del self._pending[pending.key]
        self._waiting.pop(pending.key, None)
        if pending.entry is not None:
            self._deadlines.remove(pending.entry)
            pending.entry = None
        if isinstance(result, BaseException):
            self._failed(result)
        give(pending.outcome, result, self.name)
        if pending.link is not None:
            self._unwrite(pending)
        if not self._pending:
            self._drained(None)

    def _failed(self, error: BaseException) -> None:
        """
        One event per failed outcome: every outcome unknown (it may need a
        reversal), "not sent" at a bounded rate (a link down fails them all).
        """
        if isinstance(error, OutcomeUnknown):
            self.log.info(
                "{mux}: outcome unknown: {error}",
                mux=self.name,
                error=str(error),
                event="request.outcome_unknown",
            )
        else:
            self._limiter.emit(
                self.log.info,
                type(error).__name__,
                "{mux}: not sent: {error}",
                mux=self.name,
                error=str(error),
                event="request.not_sent",
            )

    def _cancel(self, pending: _Pending) -> None:
        if pending.done:
            return
        error: RequestError
        if pending.link is not None:
            self._remember(pending.key)
            error = CancelledAfterWrite(
                f"{self.name}: cancelled after the request was written "
                f"({self.keys.describe(pending.message)}); outcome unknown"
            )
        else:
            error = CancelledBeforeWrite(
                f"{self.name}: cancelled before the request was written "
                f"({self.keys.describe(pending.message)}) - not sent"
            )
        self._complete(pending, error)

    def _remember(self, key: str) -> None:
        self._expired[key] = None
        if len(self._expired) > self.lateMemory:
            self._expired.popitem(last=False)

    def _expire(self, pending: _Pending, why: str = "link not ready before the deadline") -> None:
        if pending.done:
            return
        if pending.link is not None:
            self._unknown(pending, RequestTimeout, "no response before the deadline")
        else:
            self._counts["tx_expired"] += 1
            self._complete(
                pending,
                LinkNotReady(
                    f"{self.name}: {why} ({self.keys.describe(pending.message)}) - not sent"
                ),
            )

    # -- inbound ----------------------------------------------------------------

    def messageReceived(
        self, message: Dict[str, str], final: bool = True, source: Optional[ISource] = None
    ) -> bool:
        """
        A message arrived on a link: a response to match, or a message for
        the request listeners and then the unhandled path (jPOS's
        C{processUnhandled}).  When not C{final}, only a matching response
        is taken (see L{ILink.addReceiver}).

        @return: whether this MUX took the message.
        """
        mti = message.get("t", "")
        response = isResponse(mti)
        if self.returnRejects or response:
            try:
                key = self.keys.key(message)
            except MissingKey:
                key = None
            pending = self._pending.get(key) if key is not None else None
            if pending is not None and pending.link is not None:
                if message.get("39") in self.ignoreRC:
                    self._counts["rx_ignored"] += 1
                    return True
                now = self.clock.seconds()
                self._unmatchedRun = 0
                self._counts["rx"] += 1
                self._counts["last_txn"] = now
                self.latency.record(now - pending.started)
                self._complete(pending, message)
                return True
            if not final and response:
                return False
            if key is not None and key in self._expired:
                self._counts["rx_late"] += 1
            elif response and self._pending and key not in self._sentOnly:
                self._unmatched(source or self.link)
        # muxpool's links are their own sources (LinkBase, MemoryLink).
        self._processUnhandled(message, source or cast(ISource, self.link))
        return True

    def _unmatched(self, link: object) -> None:
        """
        A response matched no request, pending or timed out, while requests
        wait: after L{unmatchedLimit} in a row the link's stream is out of
        step (a length prefix that framed the wrong bytes, keys that no
        longer line up), so every answer on it is lost: reconnect it.
        """
        self._unmatchedRun += 1
        if not self.unmatchedLimit or self._unmatchedRun < self.unmatchedLimit:
            return
        self._unmatchedRun = 0
        if IReconnect.providedBy(link):
            link.reconnect(
                f"{self.unmatchedLimit} answers in a row matched no request of {self.name}"
            )

    def _processUnhandled(self, message: Dict[str, str], source: ISource) -> None:
        """
        As jPOS: offer the message to the request listeners (a late approval
        can be reversed there); if none takes it, count it, log it (masked)
        and hand it to C{unhandled}.
        """
        if self.listeners:
            self._counts["rx_forwarded"] += 1
            try:
                if offer(self.listeners, source, message):
                    return
            except ListenerFailed as e:
                self.log.error(
                    "{mux}: {error} on {message}",
                    mux=self.name,
                    error=str(e),
                    message=self._mask(message),
                )
                return
        self._counts["rx_unhandled"] += 1
        self._limiter.emit(  # counted every time; a flood is not a flood of lines
            self.log.info,
            "unhandled",
            "{mux}: unhandled message {message}",
            mux=self.name,
            message=self._mask(message),
        )
        handler = self.unhandled
        if handler is None:
            return
        try:
            if IRequestListener.providedBy(handler):
                handler.process(source, message)
            else:
                handler(message)
        except Exception as e:
            self.log.error(
                "{mux}: unhandled-message handler {handler} failed on {message}: {error}",
                mux=self.name,
                handler=describeCode(handler),
                error=describeError(e),
                message=self._mask(message),
            )

    def status(self) -> Dict[str, object]:
        """
        The QMUX as an operator sees it: its link, readiness, jPOS-named
        counters and latency.
        """
        return {
            "kind": "qmux",
            "name": self.name,
            "running": bool(self.running),
            "connected": self.isConnected(),
            "in_flight": len(self._pending),
            "max_in_flight": self.maxInFlight,
            "link": getattr(self.link, "name", None),
            "links": [getattr(link, "name", repr(link)) for link in self._attached],
            "counters": self.counters,
            "latency": self.latency.summary(),
        }

    def _mask(self, message: Mapping[str, str]) -> str:
        return maskMessage(message, binaryFieldsOf(self.link))
