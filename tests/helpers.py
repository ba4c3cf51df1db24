"""
Small test doubles shared by the unit tests.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.interfaces import IChannelOwner


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
