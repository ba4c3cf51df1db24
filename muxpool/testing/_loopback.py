"""
A real issuer and a real link on 127.0.0.1, for integration tests: the
whole stack (framing, packager, sockets) with OS-chosen ports.
"""

from __future__ import annotations

from typing import Any, Generator, Iterable, Mapping, NamedTuple, Optional, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime

from muxpool._config import tcpEndpoint
from muxpool.channel import ChannelSpec
from muxpool.interfaces import IRequestListener
from muxpool.link import AdaptorSettings, ChannelAdaptor, QServer, ServerSettings
from muxpool.listeners import Responder
from muxpool.mux import QMUX

LOOPBACK = "127.0.0.1"


def defaultSpec() -> ChannelSpec:
    """
    What the loopback helpers speak unless told: C{NACChannel} with
    C{ISO87A}.
    """
    return ChannelSpec.fromConfig("NACChannel", "ISO87A")


@inlineCallbacks
def startIssuer(
    reactor: IReactorTime,
    listeners: Optional[Iterable[IRequestListener]] = None,
    *,
    spec: Optional[ChannelSpec] = None,
    port: int = 0,
    name: str = "issuer",
    **options: Any,
) -> Generator[Deferred, Any, QServer]:
    """
    A L{QServer} on 127.0.0.1 answering with C{listeners} (by default a
    L{Responder}: 39=00 at once), started.  Stop it with C{stopService()}.

    @param port: 0 (the default) lets the OS choose; see L{portOf}.
    @param options: L{ServerSettings} (C{gracePeriod}, C{maxSessions}...).
    @return: a Deferred firing with the server once it listens.
    """
    server = QServer(
        name,
        spec or defaultSpec(),
        tcpEndpoint(port, LOOPBACK),
        reactor,
        ServerSettings(**options),
        listeners=[Responder(clock=reactor)] if listeners is None else listeners,
    )
    server.startService()
    yield server.whenListening()
    return server


def portOf(server: QServer) -> int:
    """
    The port C{server} listens on.

    @raise ValueError: it does not listen (yet: see L{QServer.whenListening}).
    """
    if server.port is None:
        raise ValueError(f"{server.name} is not listening")
    return cast(IPv4Address, server.port.getHost()).port  # a TCP server


class LoopbackLink(NamedTuple):
    """
    A started L{ChannelAdaptor} and the L{QMUX} on it (it unpacks as
    C{adaptor, mux = startLink(...)}).
    """

    adaptor: ChannelAdaptor
    mux: QMUX

    def whenReady(self) -> Deferred:
        """
        Fires once the link is connected (and signed on, if it signs on).
        """
        return self.adaptor.ready.whenReady()

    def stop(self) -> Deferred:
        """
        Stop the QMUX (its requests in flight end first), then the adaptor.
        """
        return self.mux.stopService().addCallback(lambda _: self.adaptor.stopService())


def startLink(
    reactor: IReactorTime,
    port: int,
    name: str = "link",
    *,
    spec: Optional[ChannelSpec] = None,
    host: str = LOOPBACK,
    mux: Optional[Mapping[str, Any]] = None,
    **options: Any,
) -> LoopbackLink:
    """
    A L{ChannelAdaptor} to C{host:port} (reconnecting fast: after 0.05 s,
    0.2 s at most) and a L{QMUX} named C{name-mux} on it, both started; it
    connects in the background (see L{LoopbackLink.whenReady}).

    @param mux: the L{QMUX}'s own options (C{maxInFlight}...).
    @param options: L{AdaptorSettings} (C{signOn}, C{echoInterval}...).
    """
    options.setdefault("reconnectDelay", 0.05)
    options.setdefault("maxReconnectDelay", 0.2)
    adaptor = ChannelAdaptor(
        name, spec or defaultSpec(), f"tcp:{host}:{port}", reactor, AdaptorSettings(**options)
    )
    qmux = QMUX(f"{name}-mux", adaptor, reactor, **(mux or {}))
    adaptor.startService()
    qmux.startService()
    return LoopbackLink(adaptor, qmux)
