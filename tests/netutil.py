"""
Helpers for integration tests on real loopback sockets.
"""

from twisted.internet import defer

from muxpool.adaptor import ChannelAdaptor
from muxpool.channel import ChannelSpec
from muxpool.listeners import Responder
from muxpool.loadgen import runLoad, sampleRequest  # noqa: F401 (re-exported for tests)
from muxpool.mux import QMUX
from muxpool.server import QServer


def spec(channel="NACChannel", packager="ISO87A"):
    return ChannelSpec.fromConfig(channel, packager)


@defer.inlineCallbacks
def startServer(reactor, listeners=None, port=0, **kwargs):
    """
    A QServer on 127.0.0.1 (OS-chosen port unless given), started.
    """
    server = QServer(
        kwargs.pop("name", "server"),
        kwargs.pop("spec", None) or spec(),
        f"tcp:{port}:interface=127.0.0.1:backlog=511",
        reactor,
        listeners=listeners if listeners is not None else [Responder()],
        **kwargs,
    )
    server.startService()
    yield server.whenListening()
    return server


def portOf(server):
    return server.port.getHost().port


def startClient(reactor, port, name="client", **kwargs):
    """
    A ChannelAdaptor + QMUX to 127.0.0.1:port, started.
    """
    adaptor = ChannelAdaptor(
        name, kwargs.pop("spec", None) or spec(), f"tcp:127.0.0.1:{port}", reactor,
        reconnectDelay=kwargs.pop("reconnectDelay", 0.05),
        maxReconnectDelay=kwargs.pop("maxReconnectDelay", 0.2),
        **kwargs,
    )
    mux = QMUX(name + "-mux", adaptor, reactor)
    adaptor.startService()
    mux.startService()
    return adaptor, mux


def whenState(readiness, value):
    """
    A Deferred that fires when C{readiness} becomes C{value} (now if it is).
    """
    return readiness.whenState(value)


message = sampleRequest


def whenInFlight(server, n):
    """
    Fires once the server holds C{n} unanswered requests (checked on each
    message the server receives, not by polling).
    """
    d = defer.Deferred()
    original = server.channelMessage

    def channelMessage(protocol, message):
        original(protocol, message)
        if server.inFlight() >= n and not d.called:
            server.channelMessage = original
            d.callback(None)

    server.channelMessage = channelMessage
    return d
