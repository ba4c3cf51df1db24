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

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union
from weakref import WeakKeyDictionary

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, Logger, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool._config import defaultSessionLimit, hostPort, matches, parsePatterns
from muxpool._support import RateLimiter, Waiters, backoffDelay, cancelTimer, defaultReactor
from muxpool.channel import (
    VERSIONS,
    ChannelSpec,
    IChannelOwner,
    ISOChannelProtocol,
    ServerTLS,
    describeTLSFailure,
    peerSubject,
    refusalOf,
    wrapTLS,
)
from muxpool.errors import NotSent
from muxpool.interfaces import IRequestListener, ISocketSource
from muxpool.iso import Stans, describeForReversal, isMTI, isRequest, isResponse, maskMessage
from muxpool.link._proxied import ProxiedConnection
from muxpool.link._session import ServerSession
from muxpool.listeners import ListenerFailed, decline, offer

#: What a request gets once a stopping server forwards no more: not sent.
STOPPING_CODE = "91"

#: Sessions open per reactor (in a process, its one reactor), across every
#: server: a server with no C{maxSessions} is held to the default limit for
#: all of them together.
_openSessions: "WeakKeyDictionary[object, int]" = WeakKeyDictionary()


@implementer(ILogObserver)
class _AcceptLog:
    """
    The events of Twisted's accept loop for one listening port (a refused
    accept, C{EMFILE} and its recovery: one each per connection), at a
    bounded rate: each kind once, then once an interval with a count.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    def __call__(self, event: Dict[str, Any]) -> None:
        suppressed = self.limiter.allow(("accept", event.get("log_format")))
        if suppressed is None:
            return
        if suppressed:
            event = dict(event)
            event["log_format"] = (
                f"{event.get('log_format', '')} ({{suppressed}} more like this in the last "
                f"{self.limiter.interval:.0f}s)"
            )
            event["suppressed"] = suppressed
        globalLogPublisher(event)


def _boundAcceptLog(port: IListeningPort, limiter: RateLimiter) -> None:
    """
    Send C{port}'s accept-loop events through an L{_AcceptLog}.  Twisted's
    TCP port logs them through its C{_logger} (a Logger it hands its accept
    loop); other ports are left as they are.
    """
    logger = getattr(port, "_logger", None)
    if isinstance(logger, Logger):
        accepting = Logger(namespace=logger.namespace, observer=_AcceptLog(limiter))
        port._logger = accepting  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ServerSettings:
    """
    How a L{QServer} takes sessions and stops.  All times are in seconds.

    @ivar maxSessions: sessions at once; more are refused at once.  None:
        half of what the process's file descriptor limit leaves after a
        reserve (see L{muxpool._config.defaultSessionLimit}), for the
        sessions of every such server in the process together, so no number
        of clients can run the process out of descriptors.
    @ivar allow: jPOS's allow list (see L{parsePatterns}): only these
        addresses, when given.
    @ivar deny: jPOS's deny list: never these addresses.
    @ivar gracePeriod: how long a planned stop waits for the answers owed
        to its clients.
    @ivar maxInFlight: requests one session may have unanswered before it
        is not read any more (until some are answered).
    @ivar idleTimeout: a session that sent nothing for this long, and is
        owed no answer, is closed (jPOS channel C{timeout}); None: never.
    @ivar frameTimeout: a session whose frame started and did not finish
        within this long is closed.
    @ivar signOffOnStop: on a planned stop, send each client an 0800
        70=002 (logged if not answered within C{signOffTimeout}): a client
        that understands it (muxpool's ChannelAdaptor does) stops sending.
    @ivar stopQuiet: on a planned stop, a session owed nothing is closed
        once its client has sent nothing for this long (or at the end of
        the grace period); until then its requests are read and answered,
        declined 91 once the grace period is nearly over.
    @ivar flushTimeout: after its last answer, how long a client that does
        not read gets before its connection is aborted.
    @ivar listenerErrorCode: the 39 a request gets when a request listener
        raises on it.
    @ivar tls: speak TLS (a L{ServerTLS}), requiring and checking client
        certificates if it says so; a client refused by the handshake or by
        the pinned subjects is logged with the reason.
    @ivar proxyProtocol: C{v1}, C{v2} or C{any}: connections from
        C{proxyFrom} (patterns, as C{allow}) must start with a PROXY header
        of that version, and are the client's it names: for C{allow} and
        C{deny}, limits, logs and status.  A balancer's own (v2 LOCAL)
        connection is closed quietly.  Others connect as usual.
    @ivar bindRetryDelay: if the endpoint cannot listen (its port is in
        use, say), the first retry comes this long after, then doubling up
        to C{maxBindRetryDelay}.
    """

    maxSessions: Optional[int] = None
    allow: Tuple[str, ...] = ()
    deny: Tuple[str, ...] = ()
    gracePeriod: float = 5.0
    maxInFlight: int = 128
    idleTimeout: Optional[float] = 300.0
    frameTimeout: Optional[float] = 10.0
    signOffOnStop: bool = False
    signOffTimeout: float = 1.0
    stopQuiet: float = 0.5
    flushTimeout: float = 5.0
    listenerErrorCode: str = "96"
    tls: Optional[ServerTLS] = None
    bindRetryDelay: float = 1.0
    maxBindRetryDelay: float = 30.0
    proxyProtocol: Optional[str] = None
    proxyFrom: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Written as descriptors write them (a string) or as tuples.
        object.__setattr__(self, "allow", parsePatterns(self.allow))
        object.__setattr__(self, "deny", parsePatterns(self.deny))
        object.__setattr__(self, "proxyFrom", parsePatterns(self.proxyFrom))
        if self.proxyProtocol is not None and self.proxyProtocol not in VERSIONS:
            raise ValueError(
                f"proxy-protocol {self.proxyProtocol!r}: use one of {', '.join(VERSIONS)}"
            )
        if self.proxyProtocol and not self.proxyFrom:
            raise ValueError("proxy-protocol needs proxy-from: the balancers' addresses")
        object.__setattr__(self, "maxInFlight", max(1, int(self.maxInFlight)))


class _ServerFactory(Factory):
    noisy = False

    def __init__(self, server: "QServer") -> None:
        self.server = server

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        server = self.server
        settings = server.settings
        if settings.proxyProtocol and matches(getattr(addr, "host", ""), settings.proxyFrom):
            return ProxiedConnection(server, addr)  # the client is known from its header
        return server._buildSession(addr)


@implementer(IChannelOwner)
class QServer(Service):
    """
    Listens on a Twisted server endpoint and runs request listeners, as
    its L{ServerSettings} say.

    If the endpoint cannot listen (its port is in use, say), the server
    keeps trying with a growing delay and logs each change of state once.

    @param endpoint: a Twisted server endpoint string (what a port
        takeover compares, and what workers listen on) or an endpoint.
    @param listeners: the request listeners, in chain order.
    @param sockets: where listening sockets come from in a worker process
        (a L{muxpool.app.WorkerSockets}); None: the endpoint listens.
    """

    log = Logger()
    name: str

    def __init__(
        self,
        name: str,
        spec: ChannelSpec,
        endpoint: Union[str, IStreamServerEndpoint],
        reactor: Optional[IReactorTime] = None,
        settings: ServerSettings = ServerSettings(),
        *,
        listeners: Iterable[IRequestListener] = (),
        sockets: Optional[ISocketSource] = None,
    ) -> None:
        reactor = defaultReactor(reactor)
        self.setName(name)
        self.spec = spec
        self.clock = reactor
        self.settings = settings
        #: Sessions it holds at once (its settings', or the default).
        self.maxSessions = (
            settings.maxSessions if settings.maxSessions is not None else defaultSessionLimit()
        )
        #: The endpoint as a string description, when it was given as one
        #: (what a port takeover compares, what workers listen on).
        self.description = endpoint if isinstance(endpoint, str) else None
        self.sockets = sockets
        self.tlsOptions = settings.tls.options() if settings.tls is not None else None
        self.endpoint: IStreamServerEndpoint = (
            serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
        )
        self.listeners: List[IRequestListener] = list(listeners)
        self.sessions: Dict[ISOChannelProtocol, ServerSession] = {}
        #: Connections from a balancer whose PROXY header is still to come.
        self.proxied: Set[ProxiedConnection] = set()
        self.counters = {
            "accepted": 0,
            "refused": 0,
            "rx": 0,
            "rx_unhandled": 0,
            "listener_errors": 0,
            "rx_refused": 0,
            "undelivered": 0,
            "tls_refused": 0,
            "proxy_local": 0,
        }
        self.port: Optional[IListeningPort] = None
        self.lastFailure: Optional[str] = None
        #: Field 11 of the sign-offs its sessions send (one sequence for all).
        self.stans = Stans()
        #: Bounds the rate of its warnings, and of its sessions' (shared, so
        #: many connections cannot multiply them).
        self.limiter = RateLimiter(clock=reactor)
        self._listenWaiters = Waiters()
        self._bindFailures = 0
        self._bindRetry: Optional[IDelayedCall] = None
        self._listening: Optional[Deferred] = None
        self._predecessor: Optional["QServer"] = None

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
        _boundAcceptLog(port, self.limiter)
        self.log.info(
            "{server}: listening on {address}{how}",
            server=self.name,
            address=self.listeningOn,
            how=" (took over the listening port)"
            if adopted
            else f" (after {self._bindFailures} failed attempts)"
            if self._bindFailures
            else "",
        )
        self._listenWaiters.fire(port)

    def _cannotListen(self, failure: Failure) -> None:
        self._listening = None
        if not self.running or failure.check(CancelledError):
            return
        why = failure.getErrorMessage()
        self._bindFailures += 1
        settings = self.settings
        delay = backoffDelay(
            self._bindFailures, settings.bindRetryDelay, settings.maxBindRetryDelay, 2.0
        )
        if why != self.lastFailure:
            self.log.error(
                "{server}: cannot listen: {why}; retrying, every {cap:.0f}s at most",
                server=self.name,
                why=why,
                cap=settings.maxBindRetryDelay,
            )
        self.lastFailure = why
        self._bindRetry = self.clock.callLater(delay, self._listen)

    def _accept(self, addr: Optional[IAddress]) -> Optional[ISOChannelProtocol]:
        host = getattr(addr, "host", "")
        settings = self.settings
        why = None
        if not self.running:
            why = "server stopping"  # a PROXY header that came after the stop began
        elif settings.deny and matches(host, settings.deny):
            why = "denied by deny list"
        elif settings.allow and not matches(host, settings.allow):
            why = "not in allow list"
        elif len(self.sessions) >= self.maxSessions:
            why = f"maxSessions {self.maxSessions} reached"
        elif settings.maxSessions is None and _openSessions.get(self.clock, 0) >= self.maxSessions:
            # The default limit is the process's (its file descriptors), not
            # each server's: two servers cannot hold twice as many.
            why = f"{self.maxSessions} sessions open in this process (its file descriptor share)"
        if why is not None:
            # Closed at once, before a byte is read: no request taken, none dropped.
            self._refused(host, why)
            return None
        return ISOChannelProtocol(self.spec, self, self.clock, self.limiter)

    def _buildSession(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        """
        The protocol for a session from C{addr} (TLS-wrapped if the server
        speaks TLS), or None if it is refused.
        """
        protocol = self._accept(addr)
        if protocol is not None and self.tlsOptions is not None:
            return wrapTLS(protocol, self.tlsOptions, False, self.clock)
        return protocol

    def _proxyUnknown(self, balancer: str) -> None:
        self.limiter.emit(
            self.log.info,
            "proxy unknown",
            "{server}: a PROXY header from {balancer} names no client address; "
            "the session is taken as the balancer's",
            server=self.name,
            balancer=balancer,
        )

    def _refused(self, peer: str, why: str) -> None:
        """
        A connection from C{peer} refused for C{why}: counted, and said at
        a bounded rate.
        """
        self.counters["refused"] += 1
        self.limiter.emit(
            self.log.warn,
            why,
            "{server}: refused connection from {peer}: {why}",
            server=self.name,
            peer=peer,
            why=why,
            event="server.refused",
        )

    # -- IChannelOwner ------------------------------------------------------

    def channelConnected(self, protocol: ISOChannelProtocol) -> None:
        self.counters["accepted"] += 1
        _openSessions[self.clock] = _openSessions.get(self.clock, 0) + 1
        self.sessions[protocol] = ServerSession(self, protocol)
        # At a bounded rate: a churn of connections must not churn the log.
        self.limiter.emit(
            self.log.info,
            "session opened",
            "{server}: session from {peer}",
            server=self.name,
            peer=protocol.peer,
            event="server.session_opened",
        )
        protocol.setTimeouts(self.settings.idleTimeout, self.settings.frameTimeout)

    def channelSecured(self, protocol: ISOChannelProtocol) -> None:
        subject = peerSubject(protocol.transport)
        tls = self.settings.tls
        if tls is not None and not tls.allows(subject):
            self._refuse(protocol.peer, f"TLS client subject CN={subject} is not allowed")
            protocol.transport.abortConnection()

    def _refuse(self, peer: str, why: str) -> None:
        self.counters["tls_refused"] += 1
        self.limiter.emit(
            self.log.warn,
            why,
            "{server}: refused {peer}: {why}",
            server=self.name,
            peer=peer,
            why=why,
            event="server.refused",
        )

    def channelUndecodable(self, protocol: ISOChannelProtocol, why: str) -> None:
        pass  # counted and logged by the protocol; the client may send a good one next

    def channelIdle(self, protocol: ISOChannelProtocol) -> bool:
        session = self.sessions.get(protocol)
        return session is None or not session.inFlight

    def channelMessage(self, protocol: ISOChannelProtocol, message: Dict[str, str]) -> None:
        session = self.sessions.get(protocol)
        if session is None:
            return
        self.counters["rx"] += 1
        mti = message.get("t", "")
        response = isResponse(mti)
        if response and session.network.take(message):
            return
        if session.stopping and self._stopping(session, message, mti):
            return
        if session._receivers:
            session._deliver(message)
            return
        if not isMTI(mti):
            # No answer can be made to it (no response MTI): refused, said
            # at a bounded rate, and no listener ever sees it.
            self.counters["rx_refused"] += 1
            self.limiter.emit(
                self.log.warn,
                "bad mti",
                "{server}: refused a message from {peer}: its MTI {mti!r} is not four digits",
                server=self.name,
                peer=session.peer,
                mti=mti,
            )
            return
        # Whatever its MTI, what a listener is given counts against the
        # session's in-flight limit until it is done with: a request once
        # answered; a response (it owes no answer) once the listeners had it.
        session.received()
        answered = session.answered
        try:
            handled = offer(self.listeners, session, message)
        except ListenerFailed as e:
            self.counters["listener_errors"] += 1
            binary = self.spec.packager.binaryFields
            code = self.settings.listenerErrorCode
            self.limiter.emit(
                self.log.error,
                ("listener failed", str(e)),
                "{server}: {error} on {message}{answer}",
                server=self.name,
                error=str(e),
                answer="" if response else f"; answering 39={code}",
                message=maskMessage(message, binary),
            )
            if session.answered != answered:
                return  # it did answer
            if response:
                session.answerEnded()
                return
            try:
                session.send(decline(message, code, binaryFields=binary))
            except NotSent:
                pass  # logged by the session
            except Exception:
                # No decline can be made of it: the message still ends here.
                session.answerEnded()
            return
        if (response or not handled) and session.answered == answered:
            session.answerEnded()
        if not handled:
            self.counters["rx_unhandled"] += 1
            self.limiter.emit(
                self.log.info,
                "unhandled",
                "{server}: unhandled message {message}",
                server=self.name,
                message=maskMessage(message, self.spec.packager.binaryFields),
            )

    def _stopping(self, session: ServerSession, message: Dict[str, str], mti: str) -> bool:
        """
        A message from a session of this stopping server: a request is
        declined at once (91, not sent) once the grace period leaves no
        time for an answer, and counted if our side is already closed.

        @return: whether it was taken care of here.
        """
        if session.closing:
            if isRequest(mti):
                session.unanswerable += 1
            return True
        if not isRequest(mti) or self.clock.seconds() < session.forwardUntil:
            return False
        session.declinedStopping += 1
        session.received()
        try:
            session.send(
                decline(message, STOPPING_CODE, binaryFields=self.spec.packager.binaryFields)
            )
        except NotSent:
            pass  # logged by the session
        except Exception:
            session.answerEnded()  # no decline can be made of it: it ends here
        return True

    def channelLost(self, protocol: ISOChannelProtocol, reason: Optional[Failure]) -> None:
        if self.settings.tls is not None and not protocol.secured:
            why = refusalOf(protocol.transport) or describeTLSFailure(reason)
            self._refuse(protocol.peer, why)
        session = self.sessions.pop(protocol, None)
        if session is not None:
            _openSessions[self.clock] -= 1
            self.limiter.emit(
                self.log.info,
                "session closed",
                "{server}: session from {peer} closed: {reason}",
                server=self.name,
                peer=session.peer,
                reason=reason.getErrorMessage() if reason else "closed",
                event="server.session_closed",
            )
            session.lost()
            session._lost(reason)

    def undelivered(self, session: ServerSession, message: Mapping[str, str], why: str) -> None:
        """
        One warning line per answer that did not reach its client, with
        what to reverse it by, and a count: never silently.
        """
        self.counters["undelivered"] += 1
        self.log.warn(
            "{server}: answer not delivered to {peer} ({why}): {answer}; "
            "reverse it if it was approved",
            server=self.name,
            peer=session.peer,
            why=why,
            answer=describeForReversal(message),
        )

    # -- stopping -----------------------------------------------------------

    def status(self) -> Dict[str, object]:
        """
        The server as an operator sees it: where it listens, its sessions
        (peer, answers owed, why not read), counters.
        """
        return {
            "kind": "server",
            "name": self.name,
            "running": bool(self.running),
            "endpoint": self.description,
            "listening": self.listeningOn,
            "tls": self.settings.tls is not None,
            "last_failure": self.lastFailure,
            "sessions": len(self.sessions),
            "max_sessions": self.maxSessions,
            "in_flight": self.inFlight(),
            "peers": [
                {"peer": s.peer, "in_flight": s.inFlight, "paused": sorted(s.holds)}
                for s in self.sessions.values()
            ],
            "counters": dict(self.counters),
        }

    def inFlight(self) -> int:
        return sum(s.inFlight for s in self.sessions.values())

    @property
    def listeningOn(self) -> Optional[str]:
        """
        C{host:port} it listens on; None while it does not.
        """
        if self.port is None:
            return None
        return hostPort(self.port.getHost())

    def stopService(self) -> Deferred:
        """
        A planned stop: take no more connections, then drain every session
        (see L{ServerSession.drain}) within C{gracePeriod}; fires when all
        are closed.
        """
        Service.stopService(self)
        self._bindRetry = cancelTimer(self._bindRetry)
        for waiting in list(self.proxied):
            waiting.abort()  # its PROXY header never came whole: nothing was read
        if self._listening is not None:
            self._listening.cancel()
        self._listenWaiters.cancel()
        port, self.port = self.port, None
        stopped = succeed(None) if port is None else maybeDeferred(port.stopListening)
        sessions = list(self.sessions.values())
        if sessions:
            self.log.info(
                "{server}: stopping; draining {count} sessions ({owed} answers owed)",
                server=self.name,
                count=len(sessions),
                owed=self.inFlight(),
            )
        deadline = self.clock.seconds() + self.settings.gracePeriod

        def drainAll(_: object) -> Deferred:
            return DeferredList([session.drain(deadline) for session in sessions])

        return stopped.addBoth(drainAll)
