"""
Test-only helpers; the test doubles embedders can use too live in
L{muxpool.testing}.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from muxpool.channel import ChannelSpec, IChannelOwner, ISOChannelProtocol


@implementer(IChannelOwner)
class RecordingOwner:
    """
    Collects what a channel protocol reports.
    """

    def __init__(self):
        self.messages = []
        self.connected = []
        self.lost = []

    def channelConnected(self, protocol):
        self.connected.append(protocol)

    def channelMessage(self, protocol, message):
        self.messages.append(message)

    def channelIdle(self, protocol):
        return True

    def channelSecured(self, protocol):
        pass

    def channelLost(self, protocol, reason):
        self.lost.append(reason)


def connectedProtocol(spec: ChannelSpec, owner=None, clock=None):
    """
    A channel protocol on a StringTransport, connected.
    """
    owner = owner or RecordingOwner()
    protocol = ISOChannelProtocol(spec, owner, clock or Clock())
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, owner


def started(service):
    """
    C{service}, started (a QMUX or pool holds nothing until it is).
    """
    service.startService()
    return service


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
