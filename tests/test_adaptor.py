"""
ChannelAdaptor with a fake clock and in-memory connections: ready state,
sign-on, echo, keep-alive, reconnect.
"""

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from muxpool.adaptor import ChannelAdaptor
from muxpool.channel import ChannelSpec
from muxpool.interfaces import IChannelOwner, ILink, ISource
from tests.helpers import connectedProtocol

SPEC = ChannelSpec.fromConfig("NACChannel", "ISO87A")


class Endpoint:
    """
    Connects to in-memory transports; can be told to refuse.
    """

    def __init__(self):
        self.protocols = []
        self.refuse = False

    def connect(self, factory):
        if self.refuse:
            return fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.protocols.append(protocol)
        return succeed(protocol)


def peerMessages(protocol):
    """
    What the adaptor wrote, decoded by a peer.
    """
    peer, _, owner = connectedProtocol(SPEC)
    peer.dataReceived(protocol.transport.value())
    protocol.transport.clear()
    return owner.messages


def reply(protocol, request, rc="00"):
    response = {"t": "0810", "11": request["11"], "39": rc, "70": request["70"]}
    protocol.dataReceived(SPEC.encode(response))


def makeAdaptor(**kwargs):
    clock = Clock()
    endpoint = Endpoint()
    adaptor = ChannelAdaptor("link", SPEC, endpoint, clock, reconnectDelay=1.0,
                             maxReconnectDelay=4.0, jitter=lambda: 0, **kwargs)
    adaptor.startService()
    return adaptor, endpoint, clock


def test_interfaces():
    adaptor, _, _ = makeAdaptor()
    assert verifyObject(ILink, adaptor)
    assert verifyObject(ISource, adaptor)
    assert verifyObject(IChannelOwner, adaptor)


def test_ready_while_connected_and_reconnects_with_backoff():
    adaptor, endpoint, clock = makeAdaptor()
    assert adaptor.ready
    endpoint.refuse = True
    endpoint.protocols[0].transport.loseConnection()
    endpoint.protocols[0].connectionLost(None)
    assert not adaptor.ready
    clock.advance(1.0)
    clock.advance(1.5)
    assert len(endpoint.protocols) == 1
    endpoint.refuse = False
    clock.advance(4.0)
    assert adaptor.ready and len(endpoint.protocols) == 2


def test_sign_on_gates_ready():
    adaptor, endpoint, clock = makeAdaptor(signOn=True, echoTimeout=5)
    protocol = endpoint.protocols[0]
    assert not adaptor.ready
    [signOn] = peerMessages(protocol)
    assert signOn["t"] == "0800" and signOn["70"] == "001"
    reply(protocol, signOn)
    assert adaptor.ready


def test_sign_on_refused_drops_link():
    adaptor, endpoint, clock = makeAdaptor(signOn=True)
    protocol = endpoint.protocols[0]
    [signOn] = peerMessages(protocol)
    reply(protocol, signOn, rc="91")
    assert not adaptor.ready
    assert adaptor.counters["sign_on_failures"] == 1


def test_unanswered_echo_marks_not_ready():
    adaptor, endpoint, clock = makeAdaptor(echoInterval=30, echoTimeout=10)
    protocol = endpoint.protocols[0]
    clock.advance(29)
    assert peerMessages(protocol) == []
    clock.advance(1)
    [echo] = peerMessages(protocol)
    assert echo["70"] == "301"
    reply(protocol, echo)
    assert adaptor.ready
    clock.advance(30)
    [echo2] = peerMessages(protocol)
    clock.advance(10)
    assert not adaptor.ready
    assert adaptor.counters["echo_failures"] == 1


def test_traffic_postpones_echo():
    adaptor, endpoint, clock = makeAdaptor(echoInterval=30)
    protocol = endpoint.protocols[0]
    clock.advance(20)
    protocol.dataReceived(SPEC.encode({"t": "0210", "11": "000001", "41": "T1"}))
    clock.advance(20)
    assert peerMessages(protocol) == []
    clock.advance(10)
    assert len(peerMessages(protocol)) == 1


def test_keep_alive_frames_when_idle():
    adaptor, endpoint, clock = makeAdaptor(keepAlive=True, idleTimeout=15)
    protocol = endpoint.protocols[0]
    clock.advance(15)
    assert protocol.transport.value() == b"\x00\x00"
    clock.advance(15)
    assert protocol.transport.value() == b"\x00\x00\x00\x00"
    assert adaptor.ready


def test_idle_timeout_without_keep_alive_reconnects():
    adaptor, endpoint, clock = makeAdaptor(idleTimeout=15)
    clock.advance(15)
    assert not adaptor.ready
    assert adaptor.counters["idle_timeouts"] == 1


def test_received_messages_reach_receivers_and_losses_reach_observers():
    adaptor, endpoint, clock = makeAdaptor()
    got, lost = [], []
    adaptor.addReceiver(lambda message, final: got.append(message) or True)
    adaptor.addLossObserver(lost.append)
    protocol = endpoint.protocols[0]
    protocol.dataReceived(SPEC.encode({"t": "0210", "11": "000001", "41": "T1"}))
    assert got[0]["11"] == "000001"
    protocol.connectionLost(None)
    assert len(lost) == 1
