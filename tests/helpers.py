"""
Small test doubles shared by the unit tests.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.errors import LinkNotReady
from muxpool.interfaces import IChannelOwner, ILink, ISource
from muxpool.readiness import Readiness


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


@implementer(ILink, ISource)
class FakeLink:
    """
    An in-memory link: records what is sent, delivers what a test says.
    """

    def __init__(self, name="fake", ready=True):
        self.name = name
        self.ready = Readiness(ready)
        self.sent = []
        self.receivers = []
        self.lossObservers = []
        self.refuse = None

    def send(self, message):
        if not self.ready:
            raise LinkNotReady(f"{self.name}: not connected")
        if self.refuse is not None:
            raise self.refuse
        self.sent.append(dict(message))

    def isConnected(self):
        return bool(self.ready)

    def addReceiver(self, receiver):
        self.receivers.insert(0, receiver)

    def removeReceiver(self, receiver):
        self.receivers.remove(receiver)

    def addLossObserver(self, observer):
        self.lossObservers.append(observer)

    def removeLossObserver(self, observer):
        self.lossObservers.remove(observer)

    def deliver(self, message):
        receivers = list(self.receivers)
        for i, receiver in enumerate(receivers):
            if receiver(message, i == len(receivers) - 1):
                return

    def lose(self):
        self.ready.set(False)
        for observer in list(self.lossObservers):
            observer(None)


def answer(request, **fields):
    """
    The response to C{request}: same key fields, response MTI, 39=00.
    """
    from muxpool.messages import responseMTI

    response = {k: v for k, v in request.items() if k in ("11", "41", "3", "4")}
    response["t"] = responseMTI(request["t"])
    response["39"] = "00"
    response.update(fields)
    return response


def runUntil(clock, end):
    """
    Advance C{clock} to C{end}, stopping at each delayed call on the way,
    so every call runs at exactly its time.
    """
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls() if call.getTime() <= end]
        if not due:
            break
        clock.advance(max(0.0, min(due) - clock.seconds()))
    clock.advance(max(0.0, end - clock.seconds()))


def started(service):
    """
    C{service}, started (a QMUX or pool holds nothing until it is).
    """
    service.startService()
    return service
