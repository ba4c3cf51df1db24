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
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.interfaces import IChannelOwner, IRequestListener
from muxpool.link import LinkBase
from muxpool.listeners import offer
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

    @param gracePeriod: seconds in-flight requests get to finish on stop.
    """

    log = Logger()

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
        self.sessions: Dict[ISOChannelProtocol, ServerSession] = {}
        self.counters = {"accepted": 0, "refused": 0, "rx": 0, "rx_unhandled": 0}
        self.port = None
        self._idleWaiters: List[Deferred] = []

    def __repr__(self) -> str:
        return f"<QServer {self.name}>"

    # -- listening --------------------------------------------------------

    def startService(self) -> Deferred:
        Service.startService(self)
        d = self.endpoint.listen(_ServerFactory(self))

        def listening(port):
            self.port = port
            address = port.getHost()
            self.log.info(
                "{server}: listening on {address}", server=self.name,
                address=f"{getattr(address, 'host', '')}:{getattr(address, 'port', address)}",
            )
            return port

        def failed(failure):
            self.log.failure("{server}: cannot listen", failure, server=self.name)
            return failure

        return d.addCallbacks(listening, failed)

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
        if not isResponse(message.get("t", "")):
            session.inFlight += 1
        if not offer(self.listeners, session, message, self.name):
            if not isResponse(message.get("t", "")):
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
