"""
A session behind a layer-4 balancer that speaks the PROXY protocol: its
first bytes say whose connection it is.  L{ProxiedConnection} reads them,
then hands the connection to the server as that client's (for C{allow} and
C{deny}, limits, logs and status), with the rest of what came.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from muxpool._config import hostPort
from muxpool._support import cancelTimer
from muxpool.channel import VERSIONS, ProxyHeaderError, readProxyHeader

if TYPE_CHECKING:
    from muxpool.link._server import QServer

#: Seconds a balancer has to send its whole PROXY header.
HEADER_TIMEOUT = 5.0


class _NoRegistry:
    """
    What a ProtocolWrapper tells of its connections: nothing needs it.
    """

    def registerProtocol(self, protocol: object) -> None:
        pass

    def unregisterProtocol(self, protocol: object) -> None:
        pass


class ProxiedConnection(ProtocolWrapper):
    """
    A connection from a balancer allowed to send the PROXY protocol: the
    header must come first (else the connection is refused and logged);
    then the server accepts it as the client's (or refuses it, as any),
    and the client's protocol gets the rest.  A balancer's own connection
    (a v2 LOCAL health check) is closed quietly.
    """

    def __init__(self, server: "QServer", balancer: Optional[IAddress]) -> None:
        ProtocolWrapper.__init__(self, _NoRegistry(), None)  # type: ignore[arg-type]
        self.server = server
        self.balancer = balancer
        self.client: Optional[IAddress] = None
        self._buffer = b""
        self._timer: Optional[IDelayedCall] = None
        self._done = False

    def makeConnection(self, transport: Any) -> None:
        # The client's protocol is connected once the header is read.
        self.connected = True
        self.transport = transport
        self.server.proxied.add(self)
        self._timer = self.server.clock.callLater(HEADER_TIMEOUT, self._late)

    def _late(self) -> None:
        self._timer = None
        self._refuse(f"no whole PROXY header within {HEADER_TIMEOUT:g}s")

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            if self.wrappedProtocol is not None:
                self.wrappedProtocol.dataReceived(data)
            return
        self._buffer += data
        versions = VERSIONS[self.server.settings.proxyProtocol or "any"]
        try:
            found = readProxyHeader(self._buffer, versions)
        except ProxyHeaderError as e:
            self._refuse(str(e))
            return
        if found is None:
            return
        header, size = found
        rest, self._buffer = self._buffer[size:], b""
        self._finished()
        if header.local:
            self.server.counters["proxy_local"] += 1
            assert self.transport is not None
            self.transport.loseConnection()  # a balancer's health check: quietly
            return
        if header.host is None:
            # The balancer does not know the client (v1 UNKNOWN, v2 UNSPEC):
            # a session, as the balancer's own address.
            self.client = self.balancer
            self.server._proxyUnknown(hostPort(self.balancer))
        else:
            kind = IPv6Address if header.ipv6 else IPv4Address
            self.client = kind("TCP", header.host, header.port)  # type: ignore[arg-type]
        protocol = self.server._buildSession(self.client)
        if protocol is None:
            self._abort()
            return
        self.wrappedProtocol = protocol
        protocol.makeConnection(self)
        if rest:
            protocol.dataReceived(rest)

    def _finished(self) -> None:
        self._done = True
        self._timer = cancelTimer(self._timer)
        self.server.proxied.discard(self)

    def _refuse(self, why: str) -> None:
        self._finished()
        self.server._refused(hostPort(self.balancer), why)
        self._abort()

    def abort(self) -> None:
        """
        The server stops before the header came whole: close, nothing read.
        """
        self._finished()
        self._abort()

    def _abort(self) -> None:
        transport: Any = self.transport  # a TCP transport: it can abort
        transport.abortConnection()

    def getPeer(self) -> IAddress:
        if self.client is not None:
            return self.client
        assert self.transport is not None
        return self.transport.getPeer()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._finished()
        self.connected = False
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.connectionLost(reason)
