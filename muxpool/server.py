"""
QServer: a listening service; each accepted connection is a L{ServerSession}.

Requests that arrive go to the server's request listeners, each given the
session they came on as the source to answer.  C{maxSessions} and
C{allow}/C{deny} (jPOS syntax, C{*} suffix wildcard) refuse connections.

The front door holds under load and under attack: a session stops being read
while its client does not read its answers (Twisted's producer/consumer) or
has C{maxInFlight} requests unanswered, so one client costs bounded memory;
a frame that starts and does not finish, or a session idle too long, is
closed.  A planned stop drains: no more connections or requests are taken,
every request already read gets its answer written (or, if its client is
gone, one warning line to reverse it by), then the sessions close.  A
replacement server takes over the listening port, so a redeploy refuses no
connection.
"""

from __future__ import annotations

from typing import (
    Any,
    Dict,
    Generator,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool import tls
from muxpool.backoff import backoffDelay
from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.errors import AnswerUndelivered, NotSent
from muxpool.interfaces import IChannelOwner, IRequestListener, ISocketSource
from muxpool.link import LinkBase
from muxpool.listeners import ListenerFailed, decline, offer
from muxpool.masking import describeForReversal, maskMessage
from muxpool.observers import Waiters
from muxpool.messages import Stans, isResponse, networkRequest
from muxpool.ratelimit import RateLimiter
from muxpool.tls import ServerTLS

#: Listen backlog for servers built from a port number.
BACKLOG = 511
SIGN_OFF = "002"


def tcpEndpoint(port: int, bindAddress: Optional[str] = None) -> str:
    """
    The endpoint a server given a port (and an address) listens on: with a
    deep accept queue, so many adaptors (re)connecting at once are not
    dropped by the kernel after their handshake completed.
    """
    endpoint = f"tcp:{int(port)}:backlog={BACKLOG}"
    return endpoint + (f":interface={bindAddress}" if bindAddress else "")


def parsePatterns(text: Union[str, Sequence[str], None]) -> tuple:
    """
    jPOS's allow/deny lists: addresses separated by commas or spaces, each
    exact or ending in C{*} (a prefix).
    """
    if not text:
        return ()
    if isinstance(text, str):
        text = text.replace(",", " ").split()
    return tuple(text)


def matches(address: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("*"):
            if address.startswith(pattern[:-1]):
                return True
        elif address == pattern:
            return True
    return False


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
        LinkBase.__init__(self, f"{server.name}/{protocol.peer}", server.spec, server.clock,
                          server._limiter)
        self.server = server
        self.protocol = protocol
        self.peer = protocol.peer
        self.inFlight = 0
        self.answered = 0
        self._holds: Set[str] = set()
        self._idleWaiters = Waiters()
        self._closed: Deferred = Deferred()
        self._signOff: Optional[Tuple[str, Deferred]] = None
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

    def received(self, message: Mapping[str, str]) -> None:
        """
        A request arrived: one more owed an answer.
        """
        self.inFlight += 1
        if self.inFlight >= self.server.maxInFlight:
            self.hold("in-flight limit")

    def send(self, message: Mapping[str, str]) -> None:
        """
        Write C{message} to the client.  An answer that cannot be written
        (the client is gone, or it cannot be packed) is logged with what to
        reverse it by, counted, and raised as L{AnswerUndelivered}.
        """
        response = isResponse(message.get("t", ""))
        if not self.isConnected():
            self._answered(response)
            self.server._undelivered(self, message, "its client is gone")
            raise AnswerUndelivered(f"{self.name}: client is gone")
        try:
            LinkBase.send(self, message)
        except NotSent as e:
            self._answered(response)
            self.server._undelivered(self, message, str(e))
            raise AnswerUndelivered(f"{self.name}: {e}") from None
        self._answered(response)

    def _answered(self, response: bool) -> None:
        if not response:
            return
        self.answered += 1
        if not self.inFlight:
            return
        self.inFlight -= 1
        if self.inFlight < self.server.maxInFlight:
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
        self._idleWaiters.fire()
        if not self._closed.called:
            self._closed.callback(None)

    def signedOff(self, message: Mapping[str, str]) -> bool:
        """
        Whether C{message} answers our sign-off (and take it if so).
        """
        if (self._signOff is None or message.get("t") != "0810"
                or message.get("70") != SIGN_OFF
                or message.get("11", "").strip() != self._signOff[0]):
            return False
        stan, d = self._signOff
        self._signOff = None
        d.callback(message)
        return True

    def _signOffNow(self, stan: str, timeout: float) -> Deferred:
        """
        Tell the client we are going (0800 70=002): one that understands
        stops sending and answers; all it sent before the answer is read.
        """
        d: Deferred = Deferred(lambda d: setattr(self, "_signOff", None))
        self._signOff = (stan, d)
        message = networkRequest(SIGN_OFF, stan, self.server.clock.seconds())
        try:
            self.protocol.sendMessage(message)
        except Exception:
            self._signOff = None
            return succeed(None)
        return d.addTimeout(timeout, self.server.clock).addErrback(lambda f: None)

    @inlineCallbacks
    def drain(self, deadline: float, stan: Optional[str]) -> Generator[Deferred, Any, None]:
        """
        A planned stop of this session: sign off (with C{stan}, if the
        server does), stop reading, let what was read be answered (until
        C{deadline}), then close once what was written is flushed.
        """
        server = self.server
        clock = server.clock
        if stan is not None and self.protocol.connected:
            yield self._signOffNow(stan, max(0.0, min(server.signOffTimeout, deadline - clock.seconds())))
        self.hold("server stopping")
        if self.inFlight and self.protocol.connected:
            remaining = max(0.0, deadline - clock.seconds())
            yield self.whenIdle().addTimeout(remaining, clock).addErrback(lambda f: None)
        if self.inFlight:
            server.log.warn("{server}: grace period over with {count} answers still owed to "
                            "{peer}; each will be logged if it comes", server=server.name,
                            count=self.inFlight, peer=self.peer)
        if self.protocol.connected:
            self._closeWrites()
            try:
                yield self._closed.addTimeout(server.flushTimeout, clock)
            except Exception:
                server.log.warn("{server}: {peer} did not read its last answers within {timeout}s; "
                                "connection aborted", server=server.name, peer=self.peer,
                                timeout=server.flushTimeout)
                self.protocol.transport.abortConnection()

    def _closeWrites(self) -> None:
        """
        End the connection so the client gets every answer written: read
        (and drop) whatever it still sends, so no unread input makes the
        kernel reset the connection and discard answers not yet delivered;
        close our side once they are sent (TCP: a half-close, the client
        closes on seeing it); wait for the client to close.
        """
        protocol = self.protocol
        transport = protocol.transport
        protocol.discardInput()
        protocol.dropProducer()
        transport.resumeProducing()
        if hasattr(transport, "loseWriteConnection") and not ISSLTransport.providedBy(transport):
            transport.loseWriteConnection()
        else:
            transport.loseConnection()


class _ServerFactory(Factory):
    noisy = False

    def __init__(self, server: "QServer") -> None:
        self.server = server

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        server = self.server
        protocol = server._accept(addr)
        if protocol is not None and server.tlsOptions is not None:
            return tls.wrap(protocol, server.tlsOptions, False, server.clock)
        return protocol


@implementer(IChannelOwner)
class QServer(Service):
    """
    Listens on a Twisted server endpoint and runs request listeners.

    If the endpoint cannot listen (its port is in use, say), the server
    keeps trying with a growing delay (C{bindRetryDelay} doubling up to
    C{maxBindRetryDelay}) and logs each change of state once.

    All times are in seconds.

    @param gracePeriod: how long a planned stop waits for the answers owed
        to its clients.
    @param maxInFlight: requests one session may have unanswered before it
        is not read any more (until some are answered).
    @param idleTimeout: a session that sent nothing for this long, and is
        owed no answer, is closed (jPOS channel C{timeout}); None: never.
    @param frameTimeout: a session whose frame started and did not finish
        within this long is closed.
    @param signOffOnStop: on a planned stop, send each client an 0800
        70=002 first and keep reading until it answers (or
        C{signOffTimeout}): a client that understands it (muxpool's
        ChannelAdaptor does) stops sending, so nothing it sends is left
        unread.
    @param flushTimeout: after its last answer, how long a client that does
        not read gets before its connection is aborted.
    @param listenerErrorCode: the 39 a request gets when a request listener
        raises on it.
    @param sockets: where listening sockets come from in a worker process
        (a L{muxpool.workers.WorkerSockets}); None: the endpoint listens.
    @param tls: speak TLS (a L{muxpool.tls.ServerTLS}), requiring and
        checking client certificates if it says so; a client refused by the
        handshake or by the pinned subjects is logged with the reason.
    """

    log = Logger()
    name: str
    bindRetryDelay = 1.0
    maxBindRetryDelay = 30.0

    def __init__(
        self,
        name: str,
        spec: ChannelSpec,
        endpoint: Union[str, IStreamServerEndpoint, None] = None,
        reactor: Optional[IReactorTime] = None,
        *,
        port: Optional[int] = None,
        bindAddress: Optional[str] = None,
        maxSessions: Optional[int] = None,
        allow: Union[str, Sequence[str], None] = None,
        deny: Union[str, Sequence[str], None] = None,
        listeners: Iterable[IRequestListener] = (),
        gracePeriod: float = 5.0,
        maxInFlight: int = 128,
        idleTimeout: Optional[float] = 300.0,
        frameTimeout: Optional[float] = 10.0,
        signOffOnStop: bool = False,
        signOffTimeout: float = 1.0,
        flushTimeout: float = 5.0,
        listenerErrorCode: str = "96",
        tls: Optional[ServerTLS] = None,
        sockets: Optional[ISocketSource] = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.setName(name)
        self.spec = spec
        self.clock = reactor
        self.reactor = reactor
        if endpoint is None:
            if port is None:
                raise ValueError(f"server {name}: needs a port or an endpoint")
            endpoint = tcpEndpoint(port, bindAddress)
        #: The endpoint as a string description, when it was given as one
        #: (what a port takeover compares, what workers listen on).
        self.description = endpoint if isinstance(endpoint, str) else None
        self.sockets = sockets
        self.tls = tls
        self.tlsOptions = tls.options() if tls is not None else None
        self.endpoint: IStreamServerEndpoint = (
            serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint)
        self.maxSessions = maxSessions
        self.allow = parsePatterns(allow)
        self.deny = parsePatterns(deny)
        self.listeners: List[IRequestListener] = list(listeners)
        self.gracePeriod = gracePeriod
        self.maxInFlight = max(1, int(maxInFlight))
        self.idleTimeout = idleTimeout
        self.frameTimeout = frameTimeout
        self.signOffOnStop = signOffOnStop
        self.signOffTimeout = signOffTimeout
        self.flushTimeout = flushTimeout
        self.listenerErrorCode = listenerErrorCode
        self.sessions: Dict[ISOChannelProtocol, ServerSession] = {}
        self.counters = {"accepted": 0, "refused": 0, "rx": 0, "rx_unhandled": 0,
                         "listener_errors": 0, "undelivered": 0, "tls_refused": 0}
        self.port: Optional[IListeningPort] = None
        self.lastFailure: Optional[str] = None
        self._listenWaiters = Waiters()
        self._bindFailures = 0
        self._bindRetry: Optional[IDelayedCall] = None
        self._listening: Optional[Deferred] = None
        self._predecessor: Optional["QServer"] = None
        self._stans = Stans()
        self._limiter = RateLimiter(clock=reactor)

    def __repr__(self) -> str:
        return f"<QServer {self.name}>"

    # -- listening --------------------------------------------------------

    def startService(self) -> None:
        """
        Start listening: on the socket of the server it takes over (see
        L{takeOver}), else on its endpoint, retrying until it can (see
        L{whenListening}).
        """
        Service.startService(self)
        self._bindFailures = 0
        predecessor, self._predecessor = self._predecessor, None
        if predecessor is not None and self._adopt(predecessor):
            return
        self._listen()

    def takeOver(self, predecessor: "QServer") -> bool:
        """
        Take over C{predecessor}'s listening port when started, so a
        redeploy refuses no connection: the port itself is handed over
        (connections it accepts from then on are ours), and C{predecessor}
        is stopped as usual, draining its sessions.  Only for the same
        endpoint.

        @return: whether it will.
        """
        if self.description is None or self.description != predecessor.description:
            return False
        self._predecessor = predecessor
        return True

    def _adopt(self, predecessor: "QServer") -> bool:
        port: Any = predecessor.port  # a listening port: its factory is handed over
        holder = getattr(port, "factory", None)
        holder = getattr(holder, "wrappedFactory", holder)  # a TLS port wraps the factory
        if not isinstance(holder, _ServerFactory) or port is None:
            return False
        factory = _ServerFactory(self)
        factory.doStart()
        if holder is port.factory:
            port.factory = factory
        else:
            port.factory.wrappedFactory = factory
        holder.doStop()
        predecessor.port = None
        self._listened(port, adopted=True)
        return True

    def whenListening(self) -> Deferred:
        """
        Fires with the listening port once the server listens (at once if
        it does now).
        """
        if self.port is not None:
            return succeed(self.port)
        return self._listenWaiters.wait()

    def _listen(self) -> None:
        self._bindRetry = None
        factory = _ServerFactory(self)
        if self.sockets is not None:
            self._listening = self.sockets.listen(self.description, self.endpoint, factory)
        else:
            self._listening = self.endpoint.listen(factory)
        self._listening.addCallbacks(self._listened, self._cannotListen)

    def _listened(self, port: IListeningPort, adopted: bool = False) -> None:
        self._listening = None
        if not self.running:
            port.stopListening()
            return
        self.port = port
        self.lastFailure = None
        self.log.info(
            "{server}: listening on {address}{how}", server=self.name, address=self.listeningOn,
            how=" (took over the listening port)" if adopted else
            f" (after {self._bindFailures} failed attempts)" if self._bindFailures else "",
        )
        self._listenWaiters.fire(port)

    def _cannotListen(self, failure: Failure) -> None:
        self._listening = None
        if not self.running or failure.check(CancelledError):
            return
        why = failure.getErrorMessage()
        self._bindFailures += 1
        delay = backoffDelay(self._bindFailures, self.bindRetryDelay, self.maxBindRetryDelay, 2.0)
        if why != self.lastFailure:
            self.log.error("{server}: cannot listen: {why}; retrying, every {cap:.0f}s at most",
                           server=self.name, why=why, cap=self.maxBindRetryDelay)
        self.lastFailure = why
        self._bindRetry = self.clock.callLater(delay, self._listen)

    def _accept(self, addr: Optional[IAddress]) -> Optional[ISOChannelProtocol]:
        host = getattr(addr, "host", "")
        why = None
        if self.deny and matches(host, self.deny):
            why = "denied by deny list"
        elif self.allow and not matches(host, self.allow):
            why = "not in allow list"
        elif self.maxSessions is not None and len(self.sessions) >= self.maxSessions:
            why = f"maxSessions {self.maxSessions} reached"
        if why is not None:
            # Closed at once, before a byte is read: no request taken, none dropped.
            self.counters["refused"] += 1
            self._limiter.emit(self.log.warn, why, "{server}: refused connection from {peer}: {why}",
                               server=self.name, peer=host, why=why, event="server.refused")
            return None
        return ISOChannelProtocol(self.spec, self, self.clock, self._limiter)

    # -- IChannelOwner ------------------------------------------------------

    def channelConnected(self, protocol: ISOChannelProtocol) -> None:
        self.counters["accepted"] += 1
        self.sessions[protocol] = ServerSession(self, protocol)
        self.log.info("{server}: session from {peer}", server=self.name, peer=protocol.peer,
                      event="server.session_opened")
        protocol.setTimeouts(self.idleTimeout, self.frameTimeout)

    def channelSecured(self, protocol: ISOChannelProtocol) -> None:
        subject = tls.peerSubject(protocol.transport)
        if self.tls is not None and not self.tls.allows(subject):
            self._refuse(protocol.peer, f"TLS client subject CN={subject} is not allowed")
            protocol.transport.abortConnection()

    def _refuse(self, peer: str, why: str) -> None:
        self.counters["tls_refused"] += 1
        self._limiter.emit(self.log.warn, why, "{server}: refused {peer}: {why}", server=self.name,
                           peer=peer, why=why, event="server.refused")

    def channelIdle(self, protocol: ISOChannelProtocol) -> bool:
        session = self.sessions.get(protocol)
        return session is None or not session.inFlight

    def channelMessage(self, protocol: ISOChannelProtocol, message: Dict[str, str]) -> None:
        session = self.sessions.get(protocol)
        if session is None:
            return
        self.counters["rx"] += 1
        response = isResponse(message.get("t", ""))
        if response and session.signedOff(message):
            return
        if session._receivers:
            session._deliver(message)
            return
        if not response:
            session.received(message)
        answered = session.answered
        try:
            handled = offer(self.listeners, session, message)
        except ListenerFailed as e:
            self.counters["listener_errors"] += 1
            binary = self.spec.packager.binaryFields
            self.log.error("{server}: {error} on {message}; answering 39={code}",
                           server=self.name, error=str(e), code=self.listenerErrorCode,
                           message=maskMessage(message, binary))
            if not response and session.answered == answered:  # unless it did answer
                try:
                    session.send(decline(message, self.listenerErrorCode, binaryFields=binary))
                except NotSent:
                    pass  # logged by the session
            return
        if not handled:
            if not response:
                session._answered(True)
            self.counters["rx_unhandled"] += 1
            self.log.info("{server}: unhandled message {message}", server=self.name,
                          message=maskMessage(message, self.spec.packager.binaryFields))

    def channelLost(self, protocol: ISOChannelProtocol, reason: Optional[Failure]) -> None:
        if self.tls is not None and not protocol.secured:
            self._refuse(protocol.peer, tls.describeFailure(reason))
        session = self.sessions.pop(protocol, None)
        if session is not None:
            self.log.info("{server}: session from {peer} closed: {reason}", server=self.name,
                          peer=session.peer, reason=reason.getErrorMessage() if reason else "closed",
                          event="server.session_closed")
            session.lost()
            session._lost(reason)

    def _undelivered(self, session: ServerSession, message: Mapping[str, str], why: str) -> None:
        """
        One warning line per answer that did not reach its client, with
        what to reverse it by, and a count: never silently.
        """
        self.counters["undelivered"] += 1
        self.log.warn("{server}: answer not delivered to {peer} ({why}): {answer}; "
                      "reverse it if it was approved", server=self.name, peer=session.peer,
                      why=why, answer=describeForReversal(message))

    # -- stopping -----------------------------------------------------------

    def status(self) -> Dict[str, object]:
        """
        The server as an operator sees it: where it listens, its sessions
        (peer, answers owed, why not read), counters.
        """
        return {"kind": "server", "name": self.name, "running": bool(self.running),
                "endpoint": self.description, "listening": self.listeningOn,
                "tls": self.tls is not None, "last_failure": self.lastFailure,
                "sessions": len(self.sessions), "in_flight": self.inFlight(),
                "peers": [{"peer": s.peer, "in_flight": s.inFlight, "paused": sorted(s.holds)}
                          for s in self.sessions.values()],
                "counters": dict(self.counters)}

    def inFlight(self) -> int:
        return sum(s.inFlight for s in self.sessions.values())

    @property
    def listeningOn(self) -> Optional[str]:
        """
        C{host:port} it listens on; None while it does not.
        """
        if self.port is None:
            return None
        address = self.port.getHost()
        return f"{getattr(address, 'host', '')}:{getattr(address, 'port', address)}"

    def stopService(self) -> Deferred:
        """
        A planned stop: take no more connections, then drain every session
        (see L{ServerSession.drain}) within C{gracePeriod}; fires when all
        are closed.
        """
        Service.stopService(self)
        if self._bindRetry is not None and self._bindRetry.active():
            self._bindRetry.cancel()
        self._bindRetry = None
        if self._listening is not None:
            self._listening.cancel()
        self._listenWaiters.cancel()
        port, self.port = self.port, None
        stopped = succeed(None) if port is None else maybeDeferred(port.stopListening)
        sessions = list(self.sessions.values())
        if sessions:
            self.log.info("{server}: stopping; draining {count} sessions ({owed} answers owed)",
                          server=self.name, count=len(sessions), owed=self.inFlight())
        deadline = self.clock.seconds() + self.gracePeriod

        def drainAll(_: object) -> Deferred:
            return DeferredList([
                session.drain(deadline, self._stans.next() if self.signOffOnStop else None)
                for session in sessions])

        return stopped.addBoth(drainAll)
