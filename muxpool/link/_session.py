"""
L{ServerSession}: one connection a L{QServer} accepted, the link its
requests are answered on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator, Mapping, Optional, Set

from twisted.internet.defer import Deferred, TimeoutError, inlineCallbacks, succeed
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool._support import Waiters
from muxpool.channel import ISOChannelProtocol
from muxpool.errors import AnswerUndelivered, NotSent
from muxpool.iso import SIGN_OFF, isResponse
from muxpool.link._base import LinkBase
from muxpool.link._network import NetworkExchange

if TYPE_CHECKING:
    from muxpool.link._server import QServer

#: A stopping session's requests are forwarded in the first half of the
#: grace period, and never later than this long before it ends; then
#: declined.
STOP_MARGIN = 1.0


@implementer(IPushProducer)
class ServerSession(LinkBase):
    """
    One accepted connection: an L{ILink} and the L{ISource} that requests
    from it are answered on.

    It is also the producer of what is written to its transport: when the
    client stops reading and the transport's buffer fills, Twisted pauses
    it, and the session stops reading requests until the buffer drains.

    @ivar inFlight: requests received and not yet answered.
    """

    protocol: ISOChannelProtocol

    def __init__(self, server: "QServer", protocol: ISOChannelProtocol) -> None:
        LinkBase.__init__(
            self, f"{server.name}/{protocol.peer}", server.spec, server.clock, server.limiter
        )
        self.server = server
        self.protocol = protocol
        self.peer = protocol.peer
        self.inFlight = 0
        self.answered = 0
        #: Set by L{drain}: the server is stopping.
        self.stopping = False
        #: Until when (clock time) a stopping session's requests are still
        #: forwarded; after, they are declined at once.
        self.forwardUntil = float("inf")
        #: Set once our side of the connection is closed: nothing can be
        #: answered any more.
        self.closing = False
        #: While stopping: requests declined at once, and those that came
        #: after the close (not answered: the client times them out).
        self.declinedStopping = 0
        self.unanswerable = 0
        self._holds: Set[str] = set()
        self._idleWaiters = Waiters()
        self._closed: Deferred = Deferred()
        self.network = NetworkExchange(server.clock, server.stans)
        self.ready.set(True)
        protocol.transport.registerProducer(self, True)

    def __repr__(self) -> str:
        return f"<ServerSession {self.name}>"

    # -- reading less ---------------------------------------------------------

    def hold(self, why: str) -> None:
        """
        Stop reading requests for C{why} (until L{release}).
        """
        if not self._holds and self.protocol.connected:
            self.protocol.holdFrames()
            self.protocol.transport.pauseProducing()
        self._holds.add(why)

    def release(self, why: str) -> None:
        if why not in self._holds:
            return
        self._holds.discard(why)
        if not self._holds and self.protocol.connected:
            self.protocol.releaseFrames()  # may hold again (in flight)
            if not self._holds and self.protocol.connected:
                self.protocol.transport.resumeProducing()

    @property
    def holds(self) -> frozenset:
        """
        Why the session is not being read now (empty: it is).
        """
        return frozenset(self._holds)

    def pauseProducing(self) -> None:
        self.hold("client not reading its answers")

    def resumeProducing(self) -> None:
        self.release("client not reading its answers")

    def stopProducing(self) -> None:
        pass  # the connection is going: channelLost tells

    # -- answering ------------------------------------------------------------

    def received(self) -> None:
        """
        A request arrived: one more owed an answer.
        """
        self.inFlight += 1
        if self.inFlight >= self.server.settings.maxInFlight:
            self.hold("in-flight limit")

    def send(self, message: Mapping[str, str]) -> None:
        """
        Write C{message} to the client.  An answer that cannot be written
        (the client is gone, or it cannot be packed) is logged with what to
        reverse it by, counted, and raised as L{AnswerUndelivered}.
        """
        isAnswer = isResponse(message.get("t", ""))
        if not self.isConnected():
            if isAnswer:
                self.answerEnded()
            self.server.undelivered(self, message, "its client is gone")
            raise AnswerUndelivered(f"{self.name}: client is gone")
        try:
            LinkBase.send(self, message)
        except NotSent as e:
            if isAnswer:
                self.answerEnded()
            self.server.undelivered(self, message, str(e))
            raise AnswerUndelivered(f"{self.name}: {e}") from None
        if isAnswer:
            self.answerEnded()

    def answerEnded(self) -> None:
        """
        A request read from this session has had its answer (written, or
        logged as undelivered) or needs none: one less owed.
        """
        self.answered += 1
        if not self.inFlight:
            return
        self.inFlight -= 1
        if self.inFlight < self.server.settings.maxInFlight:
            self.release("in-flight limit")
        if not self.inFlight:
            self._idleWaiters.fire()

    def whenIdle(self) -> Deferred:
        """
        Fires when no request is owed an answer (at once if none is).
        """
        if not self.inFlight:
            return succeed(None)
        return self._idleWaiters.wait()

    # -- closing ------------------------------------------------------------------

    def lost(self) -> None:
        """
        The connection is gone: answers still owed will be undeliverable.
        """
        self.ready.set(False)
        self.network.cancel()  # a sign-off waiting for its answer: no answer can come now
        self._idleWaiters.fire()
        if not self._closed.called:
            self._closed.callback(None)

    def _signOff(self, timeout: float) -> Deferred:
        """
        Tell the client we are going (0800 70=002): one that understands
        stops sending and answers; all it sent before the answer is read.
        Fires (with None) when it answered, or after C{timeout}.
        """
        d = self.network.send(self.protocol.sendMessage, SIGN_OFF, timeout)

        def unanswered(failure: Failure) -> None:
            if failure.check(TimeoutError):
                self.server.log.info(
                    "{server}: {peer} did not answer the sign-off within {timeout:g}s",
                    server=self.server.name,
                    peer=self.peer,
                    timeout=timeout,
                    event="server.sign_off_unanswered",
                )

        return d.addErrback(unanswered)

    @inlineCallbacks
    def drain(self, deadline: float) -> Generator[Deferred, Any, None]:
        """
        A planned stop of this session.  It signs off (if the server does)
        and goes on reading: a client that ignores the sign-off (jPOS's)
        keeps writing until it sees the close, and nothing it wrote is
        left unread.  Its requests are forwarded in the first half of the
        grace period (so their answers have the second half to come), then
        declined at once ("not sent", 91); the session is closed once
        nothing is owed, the sign-off is answered (or its timeout passed)
        and the client has been quiet for C{stopQuiet}, or at C{deadline},
        once what was written is flushed.  What came after the close is
        counted and logged.
        """
        server = self.server
        settings = server.settings
        clock = server.clock
        self.stopping = True
        grace = settings.gracePeriod
        self.forwardUntil = deadline - min(grace, max(STOP_MARGIN, grace / 2))
        signOff: Optional[Deferred] = None
        if settings.signOffOnStop and self.protocol.connected:
            timeout = max(0.0, min(settings.signOffTimeout, deadline - clock.seconds()))
            signOff = self._signOff(timeout)  # its answer, or not, is logged; reading goes on
        while self.protocol.connected:
            now = clock.seconds()
            if now >= deadline:
                break
            if self.inFlight:
                wait = self.whenIdle().addTimeout(deadline - now, clock)
                yield wait.addErrback(lambda f: None)
                continue
            if signOff is not None and not signOff.called:
                # A client may have written just before it saw the sign-off:
                # quiet only counts once it answered (or could have).
                yield signOff
                continue
            quietFor = now - self.protocol.lastReceived
            if quietFor >= settings.stopQuiet:
                break
            yield deferLater(clock, min(settings.stopQuiet - quietFor, deadline - now))
        if self.inFlight:
            server.log.warn(
                "{server}: grace period over with {count} answers still owed to "
                "{peer}; each will be logged if it comes",
                server=server.name,
                count=self.inFlight,
                peer=self.peer,
            )
        if self.protocol.connected:
            self._closeWrites()
            try:
                yield self._closed.addTimeout(settings.flushTimeout, clock)
            except Exception:
                server.log.warn(
                    "{server}: {peer} did not read its last answers within {timeout}s; "
                    "connection aborted",
                    server=server.name,
                    peer=self.peer,
                    timeout=settings.flushTimeout,
                )
                self.protocol.transport.abortConnection()
        if self.declinedStopping or self.unanswerable:
            server.log.warn(
                "{server}: {peer} kept sending while the server stopped: {declined} requests "
                "declined 91 (not sent), {late} came after the close and were not answered",
                server=server.name,
                peer=self.peer,
                declined=self.declinedStopping,
                late=self.unanswerable,
                event="server.sent_while_stopping",
            )

    def _closeWrites(self) -> None:
        """
        End the connection so the client gets every answer written: read
        (and count) whatever it still sends, so no unread input makes the
        kernel reset the connection and discard answers not yet delivered;
        close our side once they are sent (TCP: a half-close, the client
        closes on seeing it); wait for the client to close.
        """
        protocol = self.protocol
        transport = protocol.transport
        self.closing = True  # what still comes is read, counted, not answered
        protocol.dropProducer()
        transport.resumeProducing()
        if hasattr(transport, "loseWriteConnection") and not ISSLTransport.providedBy(transport):
            transport.loseWriteConnection()
        else:
            transport.loseConnection()
