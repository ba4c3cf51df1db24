"""
QMUX: request/response matching over one link.

A request's key is built exactly as jPOS's QMUX builds it (L{KeyBuilder});
pending requests live in a table keyed by it, each with its own deadline
timer, as Twisted's DNS client keeps its pending queries.  Every request ends
in exactly one outcome: a response, L{NotSent}, or L{OutcomeUnknown}.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from muxpool.errors import (
    DuplicateKey,
    LinkLost,
    LinkNotReady,
    MissingKey,
    NotSent,
    RequestTimeout,
)
from muxpool.interfaces import ILink, IMUX, IRequestListener, ISource
from muxpool.listeners import offer
from muxpool.masking import binaryFieldsOf, maskMessage, maskValue
from muxpool.messages import isResponse
from muxpool.metrics import LatencySummary
from muxpool.readiness import Readiness

DEFAULT_KEY = ("41", "11")
NO_MAP = "0123456789"
DEFAULT_MTI_MAPPING = (NO_MAP, NO_MAP, "0022446689")


class KeyBuilder:
    """
    Builds the key that pairs a response with its request, as jPOS's QMUX:
    the MTI through C{mtimapping}, then the key fields' values (field 11
    zero-padded to 6, or 12 for 2003 MTIs; field 41 trimmed and zero-padded
    to 16).  C{overrides} maps an MTI prefix (2 digits), optionally
    C{"prefix:pcode"}, to other key fields.
    """

    def __init__(
        self,
        fields: Sequence[str] = DEFAULT_KEY,
        overrides: Optional[Mapping[str, Sequence[str]]] = None,
        mtiMapping: Optional[Sequence[str]] = None,
    ) -> None:
        self.fields = tuple(fields)
        self.overrides = {k: tuple(v) for k, v in (overrides or {}).items()}
        mapping = tuple(mtiMapping or ())
        if len(mapping) != 3 or any(len(m) != 10 for m in mapping):
            mapping = DEFAULT_MTI_MAPPING
        self.mtiMapping = mapping

    def mapMTI(self, mti: str) -> str:
        if len(mti) < 4:
            mti = mti.rjust(4, "0")
        if len(mti) != 4:
            return ""
        out = []
        for i, table in enumerate(self.mtiMapping):
            c = ord(mti[i]) - 48
            if 0 <= c < 10:
                out.append(table[c])
        return "".join(out)

    def fieldsFor(self, message: Mapping[str, str]) -> Tuple[str, ...]:
        mti = message.get("t", "")
        prefix = mti[:2]
        pcode = (message.get("3") or "").strip()
        if pcode:
            found = self.overrides.get(f"{prefix}:{pcode}")
            if found is not None:
                return found
        return self.overrides.get(prefix, self.fields)

    def key(self, message: Mapping[str, str]) -> str:
        """
        @raise MissingKey: if the message has none of the key fields.
        """
        mti = message.get("t", "")
        parts = [self.mapMTI(mti)]
        found = False
        for f in self.fieldsFor(message):
            value = message.get(f)
            if value is None:
                continue
            if f == "11":
                trimmed = value.strip()
                width = 12 if mti[:1] == "2" else 6
                if len(trimmed) < width:
                    value = trimmed.rjust(width, "0")
            elif f == "41":
                value = value.strip().rjust(16, "0")
            parts.append(value)
            found = True
        if not found:
            raise MissingKey(
                f"none of the key fields {', '.join(self.fieldsFor(message))} "
                f"is in the {mti or 'MTI-less'} message - not sending"
            )
        return ".".join(parts)

    def describe(self, message: Mapping[str, str]) -> str:
        """
        The key as a log-safe string (card fields masked).
        """
        return " ".join(
            f"{f}={maskValue(f, message[f])}" for f in self.fieldsFor(message) if f in message
        )


class _Pending:
    """
    One request in the table: its Deferred, deadline timer and state.
    """

    __slots__ = ("key", "message", "deferred", "timer", "written", "started", "link")

    def __init__(self, key, message, deferred, started):
        self.key = key
        self.message = message
        self.deferred = deferred
        self.timer = None
        self.written = False
        self.started = started
        self.link = None


@implementer(IMUX, ISource)
class QMUX(Service):
    """
    Matches responses to requests over one L{ILink}.

    @ivar latency: a L{LatencySummary} of answered requests.
    """

    log = Logger()
    lateMemory = 10000

    def __init__(
        self,
        name: str,
        link: Optional[ILink],
        clock,
        keyBuilder: Optional[KeyBuilder] = None,
        ignoreRC: Iterable[str] = (),
        returnRejects: bool = False,
        listeners: Iterable[IRequestListener] = (),
        unhandled: Optional[Callable[[Mapping[str, str]], None]] = None,
    ) -> None:
        self.setName(name)
        self.clock = clock
        self.keys = keyBuilder or KeyBuilder()
        self.ignoreRC = frozenset(ignoreRC)
        self.returnRejects = returnRejects
        self.listeners: List[IRequestListener] = list(listeners)
        self.unhandled = unhandled
        self.ready = Readiness(False)
        self.latency = LatencySummary()
        self._pending: Dict[str, _Pending] = {}
        self._waiting: "OrderedDict[str, _Pending]" = OrderedDict()
        self._expired: "OrderedDict[str, None]" = OrderedDict()
        self._counts = dict.fromkeys(
            ("tx", "rx", "tx_expired", "rx_expired", "rx_unhandled", "rx_forwarded", "rx_late"),
            0,
        )
        self._counts["last_txn"] = 0.0
        self.link: Optional[ILink] = None
        self._links: Dict[ILink, Callable] = {}
        self._drainWaiters: List[tuple] = []
        if link is not None:
            self.setLink(link)

    def __repr__(self) -> str:
        return f"<QMUX {self.name}>"

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
        if old is not None:
            old.ready.removeObserver(self._linkReady)
            if not keepPrevious:
                self.detachLink(old)
        self.link = link
        if link is not None:
            if link not in self._links:
                lost = lambda reason, link=link: self._linkLost(link)
                self._links[link] = lost
                link.addReceiver(self.messageReceived)
                link.addLossObserver(lost)
            link.ready.addObserver(self._linkReady)
        self._linkReady(bool(link is not None and link.ready))

    @property
    def links(self) -> tuple:
        """
        Every link attached: the current one and any still draining.
        """
        return tuple(self._links)

    def detachLink(self, link: ILink) -> None:
        """
        Stop listening to C{link} (a previous link, once drained).
        """
        lost = self._links.pop(link, None)
        if lost is not None:
            link.removeReceiver(self.messageReceived)
            link.removeLossObserver(lost)

    def _linkReady(self, value: bool) -> None:
        self.ready.set(value)
        if value:
            self._flush()

    def _linkLost(self, link) -> None:
        lost = [p for p in self._pending.values() if p.written and p.link is link]
        for pending in lost:
            self._finish(pending)
            self._unknown(pending, LinkLost, "link lost after the request was written")

    def _unknown(self, pending: _Pending, error, why: str) -> None:
        """
        End a written request as "outcome unknown"; remember its key so a
        late response is counted as late.
        """
        self._remember(pending.key)
        self._counts["rx_expired"] += 1
        pending.deferred.errback(
            error(f"{self.name}: {why} ({self.keys.describe(pending.message)}); outcome unknown")
        )

    def pendingOn(self, link: Optional[ILink] = None) -> int:
        """
        Requests in flight written on C{link} (all pending ones if None).
        """
        if link is None:
            return len(self._pending)
        return sum(1 for p in self._pending.values() if p.written and p.link is link)

    def whenDrained(self, link: Optional[ILink] = None) -> Deferred:
        """
        Fires when L{pendingOn}C{(link)} is zero (at once if it is now).
        """
        if not self.pendingOn(link):
            return succeed(None)
        d = Deferred(lambda d: self._drainWaiters.remove(entry) if entry in self._drainWaiters else None)
        entry = (link, d)
        self._drainWaiters.append(entry)
        return d

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
        C{rx_late} and C{connected}.
        """
        values = dict(self._counts)
        values["tx_pending"] = len(self._waiting)
        values["rx_pending"] = len(self._pending) - len(self._waiting)
        values["connected"] = self.isConnected()
        return values

    def send(self, message: Mapping[str, str]) -> None:
        """
        Write C{message} now, expecting no answer.

        @raise NotSent: if the link is not ready or the message cannot be packed.
        """
        link = self.link
        if link is None or not link.ready:
            raise LinkNotReady(f"{self.name}: link not ready")
        link.send(message)
        self._counts["tx"] += 1

    def request(self, message: Mapping[str, str], timeout: float) -> Deferred:
        """
        Send C{message}; the Deferred fires with the response or fails with
        L{NotSent} / L{OutcomeUnknown}.  C{timeout} is in seconds.
        """
        try:
            key = self.keys.key(message)
        except MissingKey as e:
            return _fail(MissingKey(f"{self.name}: {e}"))
        if key in self._pending:
            return _fail(
                DuplicateKey(
                    f"{self.name}: duplicate key ({self.keys.describe(message)}) "
                    "already pending - not sending"
                )
            )

        def cancel(d):
            if self._pending.get(key) is pending:
                self._finish(pending)

        d = Deferred(cancel)
        pending = _Pending(key, message, d, self.clock.seconds())
        self._pending[key] = pending
        pending.timer = self.clock.callLater(max(0.0, timeout), self._expire, pending)
        if self.link is not None and self.link.ready:
            self._write(pending)
        else:
            self._waiting[key] = pending
        return d

    # -- the table ------------------------------------------------------------

    def _flush(self) -> None:
        while self._waiting and self.link is not None and self.link.ready:
            _, pending = self._waiting.popitem(last=False)
            self._write(pending)

    def _write(self, pending: _Pending) -> None:
        link = self.link
        try:
            link.send(pending.message)
        except NotSent as e:
            self._finish(pending)
            pending.deferred.errback(NotSent(f"{self.name}: {e}") if type(e) is NotSent else e)
            return
        pending.written = True
        pending.link = link
        self._counts["tx"] += 1

    def _finish(self, pending: _Pending) -> None:
        self._pending.pop(pending.key, None)
        self._waiting.pop(pending.key, None)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if self._drainWaiters:
            for entry in list(self._drainWaiters):
                if not self.pendingOn(entry[0]):
                    self._drainWaiters.remove(entry)
                    entry[1].callback(None)

    def _remember(self, key: str) -> None:
        self._expired[key] = None
        if len(self._expired) > self.lateMemory:
            self._expired.popitem(last=False)

    def _expire(self, pending: _Pending) -> None:
        pending.timer = None
        self._finish(pending)
        if pending.written:
            self._unknown(pending, RequestTimeout, "no response before the deadline")
        else:
            self._counts["tx_expired"] += 1
            pending.deferred.errback(
                LinkNotReady(
                    f"{self.name}: link not ready before the deadline "
                    f"({self.keys.describe(pending.message)}) - not sent"
                )
            )

    # -- inbound ----------------------------------------------------------------

    def messageReceived(self, message: Mapping[str, str], final: bool = True,
                        source: Optional[ISource] = None) -> bool:
        """
        A message arrived on a link: a response to match, or a request for
        the listeners.  When not C{final}, only a matching response is
        taken (see L{ILink.addReceiver}).

        @return: whether this MUX took the message.
        """
        mti = message.get("t", "")
        if self.returnRejects or isResponse(mti):
            try:
                key = self.keys.key(message)
            except MissingKey:
                key = None
            pending = self._pending.get(key) if key is not None else None
            if pending is not None and pending.written:
                if message.get("39") in self.ignoreRC:
                    return True
                self._finish(pending)
                now = self.clock.seconds()
                self._counts["rx"] += 1
                self._counts["last_txn"] = now
                self.latency.record(now - pending.started)
                pending.deferred.callback(message)
                return True
            if not final and isResponse(mti):
                return False
            if key is not None and key in self._expired:
                self._counts["rx_late"] += 1
            if isResponse(mti):
                self._unhandled(message)
                return True
        self._dispatch(message, source or self.link)
        return True

    def _dispatch(self, message, source) -> None:
        if self.listeners:
            self._counts["rx_forwarded"] += 1
            if offer(self.listeners, source, message, self.name):
                return
        self._unhandled(message)

    def _unhandled(self, message) -> None:
        self._counts["rx_unhandled"] += 1
        self.log.info(
            "{mux}: unhandled message {message}", mux=self.name, message=self._mask(message)
        )
        if self.unhandled is not None:
            try:
                self.unhandled(message)
            except Exception:
                self.log.failure("{mux}: unhandled-message handler failed", mux=self.name)

    def _mask(self, message) -> str:
        return maskMessage(message, binaryFieldsOf(self.link))

    # -- service ----------------------------------------------------------------

    def stopService(self):
        """
        Stop; requests still pending end with their own outcomes (their
        timers keep running).
        """
        Service.stopService(self)
        return succeed(None)


def _fail(error: Exception) -> Deferred:
    d = Deferred()
    d.errback(error)
    return d
