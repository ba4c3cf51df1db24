"""
QServer: a listening service; each accepted connection is a L{ServerSession}.

Requests that arrive go to the server's request listeners, each given the
session they came on as the source to answer.  C{maxSessions} and
C{allow}/C{deny} (jPOS syntax, C{*} suffix wildcard) refuse connections;
stopping lets in-flight requests finish for a grace period, then closes.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.interfaces import IChannelOwner, IRequestListener
from muxpool.link import LinkBase
from muxpool.errors import NotSent
from muxpool.listeners import ListenerFailed, decline, offer
from muxpool.masking import maskMessage
from muxpool.messages import isResponse


#: Listen backlog for servers built from a port number.
BACKLOG = 511


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


class ServerSession(LinkBase):
    """
    One accepted connection: an L{ILink} and the L{ISource} that requests
    from it are answered on.

    @ivar inFlight: requests received and not yet answered.
    """

    def __init__(self, server: "QServer", protocol: ISOChannelProtocol) -> None:
        LinkBase.__init__(self, f"{server.name}/{protocol.peer}", server.spec)
        self.server = server
        self.protocol = protocol
        self.inFlight = 0
        self.ready.set(True)

    def __repr__(self) -> str:
        return f"<ServerSession {self.name}>"

    def send(self, message: Mapping[str, str]) -> None:
        LinkBase.send(self, message)
        if self.inFlight and isResponse(message.get("t", "")):
            self.inFlight -= 1
            if not self.inFlight:
                self.server._sessionIdle()

    def close(self) -> None:
        if self.protocol.connected:
            self.protocol.transport.loseConnection()


class _ServerFactory(Factory):
    noisy = False

    def __init__(self, server: "QServer") -> None:
        self.server = server

    def buildProtocol(self, addr):
        return self.server._accept(addr)


@implementer(IChannelOwner)
class QServer(Service):
    """
    Listens on a Twisted server endpoint and runs request listeners.

    If the endpoint cannot listen (its port is in use, say), the server
    keeps trying with a growing delay (C{bindRetryDelay} doubling up to
    C{maxBindRetryDelay}) and logs each change of state once: the first
    failure, a different failure, and listening at last.

    @param gracePeriod: seconds in-flight requests get to finish on stop.
    @param listenerErrorCode: the 39 a request gets when a request listener
        raises on it (the listener's class and file, and the error's type,
        are logged).
    """

    log = Logger()
    bindRetryDelay = 1.0
    maxBindRetryDelay = 30.0

    def __init__(
        self,
        name: str,
        spec: ChannelSpec,
        endpoint: Union[str, IStreamServerEndpoint, None] = None,
        reactor=None,
        *,
        port: Optional[int] = None,
        bindAddress: Optional[str] = None,
        maxSessions: Optional[int] = None,
        allow=None,
        deny=None,
        listeners: Iterable[IRequestListener] = (),
        gracePeriod: float = 5.0,
        listenerErrorCode: str = "96",
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.setName(name)
        self.spec = spec
        self.clock = reactor
        if isinstance(endpoint, str):
            endpoint = serverFromString(reactor, endpoint)
        elif endpoint is None:
            if port is None:
                raise ValueError(f"server {name}: needs a port or an endpoint")
            # A deep accept queue: many adaptors (re)connecting at once must
            # not be dropped by the kernel after their handshake completed.
            description = f"tcp:{int(port)}:backlog={BACKLOG}"
            if bindAddress:
                description += f":interface={bindAddress}"
            endpoint = serverFromString(reactor, description)
        self.endpoint = endpoint
        self.maxSessions = maxSessions
        self.allow = parsePatterns(allow)
        self.deny = parsePatterns(deny)
        self.listeners: List[IRequestListener] = list(listeners)
        self.gracePeriod = gracePeriod
        self.listenerErrorCode = listenerErrorCode
        self.sessions: Dict[ISOChannelProtocol, ServerSession] = {}
        self.counters = {"accepted": 0, "refused": 0, "rx": 0, "rx_unhandled": 0,
                         "listener_errors": 0}
        self.port = None
        self.lastFailure: Optional[str] = None
        self._idleWaiters: List[Deferred] = []
        self._listenWaiters: List[Deferred] = []
        self._bindFailures = 0
        self._bindRetry = None
        self._listening: Optional[Deferred] = None

    def __repr__(self) -> str:
        return f"<QServer {self.name}>"

    # -- listening --------------------------------------------------------

    def startService(self) -> None:
        """
        Start listening (retrying until it can; see L{whenListening}).
        """
        Service.startService(self)
        self._bindFailures = 0
        self._listen()

    def whenListening(self) -> Deferred:
        """
        Fires with the listening port once the server listens (at once if
        it does now).
        """
        if self.port is not None:
            return succeed(self.port)
        waiters = self._listenWaiters
        d = Deferred(lambda d: waiters.remove(d) if d in waiters else None)
        waiters.append(d)
        return d

    def _listen(self) -> None:
        self._bindRetry = None
        self._listening = self.endpoint.listen(_ServerFactory(self))
        self._listening.addCallbacks(self._listened, self._cannotListen)

    def _listened(self, port) -> None:
        self._listening = None
        if not self.running:
            port.stopListening()
            return
        self.port = port
        self.lastFailure = None
        address = port.getHost()
        self.log.info(
            "{server}: listening on {address}{after}", server=self.name,
            address=f"{getattr(address, 'host', '')}:{getattr(address, 'port', address)}",
            after=f" (after {self._bindFailures} failed attempts)" if self._bindFailures else "",
        )
        waiters, self._listenWaiters = self._listenWaiters, []
        for d in waiters:
            d.callback(port)

    def _cannotListen(self, failure) -> None:
        self._listening = None
        if not self.running or failure.check(CancelledError):
            return
        why = failure.getErrorMessage()
        delay = min(self.maxBindRetryDelay, self.bindRetryDelay * 2 ** self._bindFailures)
        self._bindFailures += 1
        if why != self.lastFailure:
            self.log.error("{server}: cannot listen: {why}; retrying, every {cap:.0f}s at most",
                           server=self.name, why=why, cap=self.maxBindRetryDelay)
        self.lastFailure = why
        self._bindRetry = self.clock.callLater(delay, self._listen)

    def _accept(self, addr) -> Optional[ISOChannelProtocol]:
        host = getattr(addr, "host", "")
        why = None
        if self.deny and matches(host, self.deny):
            why = "denied by deny list"
        elif self.allow and not matches(host, self.allow):
            why = "not in allow list"
        elif self.maxSessions is not None and len(self.sessions) >= self.maxSessions:
            why = f"maxSessions {self.maxSessions} reached"
        if why is not None:
            self.counters["refused"] += 1
            self.log.warn("{server}: refused connection from {peer}: {why}",
                          server=self.name, peer=host, why=why)
            return None
        return ISOChannelProtocol(self.spec, self, self.clock)

    # -- IChannelOwner ------------------------------------------------------

    def channelConnected(self, protocol: ISOChannelProtocol) -> None:
        self.counters["accepted"] += 1
        self.sessions[protocol] = ServerSession(self, protocol)

    def channelMessage(self, protocol: ISOChannelProtocol, message) -> None:
        session = self.sessions.get(protocol)
        if session is None:
            return
        self.counters["rx"] += 1
        if session._receivers:
            session._deliver(message)
            return
        request = not isResponse(message.get("t", ""))
        if request:
            session.inFlight += 1
        try:
            handled = offer(self.listeners, session, message)
        except ListenerFailed as e:
            self.counters["listener_errors"] += 1
            binary = self.spec.packager.binaryFields
            self.log.error("{server}: {error} on {message}; answering 39={code}",
                           server=self.name, error=str(e), code=self.listenerErrorCode,
                           message=maskMessage(message, binary))
            if request:
                try:
                    session.send(decline(message, self.listenerErrorCode, binaryFields=binary))
                except NotSent as sendError:
                    self.log.warn("{server}: could not answer: {error}", server=self.name,
                                  error=str(sendError))
            return
        if not handled:
            if request:
                session.inFlight -= 1
            self.counters["rx_unhandled"] += 1
            self.log.info("{server}: unhandled message {message}", server=self.name,
                          message=maskMessage(message, self.spec.packager.binaryFields))

    def channelLost(self, protocol: ISOChannelProtocol, reason) -> None:
        session = self.sessions.pop(protocol, None)
        if session is not None:
            session.ready.set(False)
            session._lost(reason)
            session.inFlight = 0
            self._sessionIdle()

    # -- stopping -----------------------------------------------------------

    def inFlight(self) -> int:
        return sum(s.inFlight for s in self.sessions.values())

    def _sessionIdle(self) -> None:
        if self.inFlight() == 0:
            waiters, self._idleWaiters = self._idleWaiters, []
            for d in waiters:
                d.callback(None)

    def _whenIdle(self) -> Deferred:
        if self.inFlight() == 0:
            return succeed(None)
        d = Deferred(lambda d: self._idleWaiters.remove(d) if d in self._idleWaiters else None)
        self._idleWaiters.append(d)
        return d.addTimeout(self.gracePeriod, self.clock).addErrback(lambda _: None)

    def stopService(self) -> Deferred:
        """
        Stop listening, give in-flight requests up to C{gracePeriod}, then
        close every session; fires when all are closed.
        """
        Service.stopService(self)
        if self._bindRetry is not None and self._bindRetry.active():
            self._bindRetry.cancel()
        self._bindRetry = None
        if self._listening is not None:
            self._listening.cancel()
        port, self.port = self.port, None
        stopped = succeed(None) if port is None else maybeDeferred(port.stopListening)

        def closeAll(_):
            closing = []
            for protocol, session in list(self.sessions.items()):
                done = Deferred()
                session.addLossObserver(lambda reason, done=done: done.called or done.callback(None))
                closing.append(done)
                session.close()
            return DeferredList(closing)

        return stopped.addBoth(lambda _: self._whenIdle()).addCallback(closeAll)
