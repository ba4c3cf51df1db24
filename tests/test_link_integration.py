"""
One link end to end: QServer + Responder, and a ChannelAdaptor + QMUX
client.  Joined in memory (L{tests.helpers.MemoryNetwork}: the real
protocols, framing and packagers, on a MemoryReactorClock), except allow
and deny, which match the peer address the OS reports for a real loopback
connection.
"""

import socket

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.errors import LinkLost, LinkNotReady
from muxpool.iso import sampleRequest
from muxpool.listeners import Responder
from muxpool.testing import portOf, startIssuer, startLink
from tests.helpers import MemoryNetwork, whenInFlight

PORT = 9000


class RawClient(Protocol):
    """
    A client that is no ISO link: sends C{data} once connected, keeps what
    it receives; C{closed} fires when its connection is closed.
    """

    def __init__(self, data=b""):
        self.data = data
        self.received = b""
        self.closed = defer.Deferred()

    def connectionMade(self):
        if self.data:
            self.transport.write(self.data)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(None)


def rawClient(net, data=b""):
    client = RawClient(data)
    connectProtocol(TCP4ClientEndpoint(net.reactor, "127.0.0.1", PORT), client)
    return client


def test_twenty_thousand_requests_two_hundred_in_flight():
    net = MemoryNetwork()
    server = net.wait(startIssuer(net.reactor, port=PORT))
    adaptor, mux = startLink(net.reactor, PORT)
    net.wait(adaptor.ready.whenState(True))
    outcomes = net.wait(runLoad(mux, 20000, 200))
    assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes)
    assert [o["11"] for o in outcomes[:3]] == ["000000", "000001", "000002"]
    counters = mux.counters
    assert counters["tx"] == 20000 and counters["rx"] == 20000
    assert counters["rx_expired"] == counters["tx_expired"] == 0
    assert counters["rx_unhandled"] == 0 and counters["rx_pending"] == 0
    assert counters["tx_pending"] == 0
    assert server.counters["rx"] == 20000
    assert mux.latency.summary()["count"] == 20000


def test_server_killed_mid_stream_then_back():
    """
    Every in-flight request gets an outcome when the server dies; the
    adaptor reconnects when it returns and traffic resumes.
    """
    net = MemoryNetwork()
    r = net.reactor
    server = net.wait(
        startIssuer(r, listeners=[Responder(delay=0.002, clock=r)], port=PORT, gracePeriod=0)
    )
    adaptor, mux = startLink(r, PORT)
    net.wait(adaptor.ready.whenState(True))
    killed = []

    def onEach(i, result):
        if i == 300 and not killed:  # kill the server mid-stream
            killed.append(server.stopService())

    outcomes = net.wait(runLoad(mux, 500, 50, timeout=1.0, onEach=onEach))
    net.wait(killed[0])
    assert all(o is not None for o in outcomes)
    answered = [o for o in outcomes if isinstance(o, dict)]
    failures = [o for o in outcomes if isinstance(o, Failure)]
    assert len(answered) >= 300 and failures
    for f in failures:
        assert f.check(LinkLost, LinkNotReady)
    assert mux.pendingCount() == 0
    assert not adaptor.ready

    net.wait(startIssuer(r, port=PORT))
    net.wait(adaptor.ready.whenState(True))
    outcomes = net.wait(runLoad(mux, 200, 20, start=5000))
    assert all(isinstance(o, dict) for o in outcomes)
    assert adaptor.counters["connects"] >= 2


class SilentOnEcho:
    """
    Swallows network-management requests: a peer that keeps TCP open but
    no longer answers echoes.
    """

    def process(self, source, message):
        return message["t"] == "0800"


def test_dead_peer_detected_by_echo():
    net = MemoryNetwork()
    net.wait(startIssuer(net.reactor, listeners=[SilentOnEcho(), Responder()], port=PORT))
    adaptor, mux = startLink(
        net.reactor,
        PORT,
        echoInterval=0.2,
        echoTimeout=0.3,
        reconnectDelay=5,
        maxReconnectDelay=5,
    )
    net.wait(adaptor.ready.whenState(True))
    net.wait(adaptor.ready.whenState(False))
    assert adaptor.counters["echo_failures"] == 1


def test_sign_on_before_ready():
    net = MemoryNetwork()
    server = net.wait(startIssuer(net.reactor, port=PORT))
    adaptor, mux = startLink(net.reactor, PORT, signOn=True, echoTimeout=2)
    net.wait(adaptor.ready.whenState(True))
    assert server.counters["rx"] == 1  # the sign-on
    response = net.wait(mux.request(sampleRequest(1), 5))
    assert response["39"] == "00"


def test_garbage_client_disconnected_other_client_unharmed():
    net = MemoryNetwork()
    ascii = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
    net.wait(startIssuer(net.reactor, spec=ascii, port=PORT))
    adaptor, mux = startLink(net.reactor, PORT, spec=ascii)
    net.wait(adaptor.ready.whenState(True))
    garbage = rawClient(net, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
    net.wait(garbage.closed)
    assert garbage.received == b""
    outcomes = net.wait(runLoad(mux, 500, 50))
    assert all(isinstance(o, dict) for o in outcomes)


def test_max_sessions_refuses_extra():
    net = MemoryNetwork()
    server = net.wait(startIssuer(net.reactor, port=PORT, maxSessions=1))
    first, mux1 = startLink(net.reactor, PORT, name="first")
    net.wait(first.ready.whenState(True))
    extra = rawClient(net)
    net.wait(extra.closed)
    assert extra.received == b""
    assert server.counters["refused"] == 1
    assert len(server.sessions) == 1
    response = net.wait(mux1.request(sampleRequest(1), 5))
    assert response["39"] == "00"


def reactor():
    from twisted.internet import reactor

    return reactor


def r_recv(sock):
    from twisted.internet.threads import deferToThread

    return deferToThread(sock.recv, 100)


@pytest.mark.parametrize(
    "allow,deny,refused",
    [
        (None, "127.0.0.*", True),
        ("10.*", None, True),
        ("127.0.0.1", None, False),
        ("127.*", "127.0.0.2", False),
    ],
)
@pytest_twisted.inlineCallbacks
def test_allow_deny(allow, deny, refused):
    r = reactor()
    server = yield startIssuer(r, allow=allow, deny=deny)
    try:
        sock = socket.create_connection(("127.0.0.1", portOf(server)))
        try:
            sock.settimeout(5)
            if refused:
                assert (yield r_recv(sock)) == b""
                assert server.counters["refused"] == 1
            else:
                sock.sendall(server.spec.encode(sampleRequest(1)))
                data = yield r_recv(sock)
                assert data and server.counters["refused"] == 0
        finally:
            sock.close()
    finally:
        yield server.stopService()


def test_server_stop_lets_in_flight_finish():
    from zope.interface.verify import verifyObject

    from muxpool.channel import IChannelOwner
    from muxpool.interfaces import ILink, ISource

    net = MemoryNetwork()
    r = net.reactor
    server = net.wait(
        startIssuer(r, listeners=[Responder(delay=0.3, clock=r)], port=PORT, gracePeriod=5)
    )
    adaptor, mux = startLink(r, PORT, reconnectDelay=5, maxReconnectDelay=5)
    net.wait(adaptor.ready.whenState(True))
    [session] = server.sessions.values()
    assert verifyObject(ILink, session) and verifyObject(ISource, session)
    assert verifyObject(IChannelOwner, server)
    pending = [mux.request(sampleRequest(i), 5) for i in range(5)]
    net.wait(whenInFlight(server, 5))
    net.wait(server.stopService())
    results = net.wait(defer.gatherResults(pending))
    assert [m["39"] for m in results] == ["00"] * 5
    assert server.sessions == {}


def test_usable_from_async_def():
    """
    Embedding code awaits requests; failures arrive as the outcome types.
    """
    from muxpool import MissingKey

    net = MemoryNetwork()
    net.wait(startIssuer(net.reactor, port=PORT))
    adaptor, mux = startLink(net.reactor, PORT)

    async def embedder():
        await adaptor.ready.whenState(True)
        response = await mux.request(sampleRequest(7), 5)
        assert response["39"] == "00" and response["11"] == "000007"
        with pytest.raises(MissingKey):
            await mux.request({"t": "0200", "3": "000000"}, 5)
        return "done"

    # the coroutine waits on requests in flight while the network runs
    assert net.wait(defer.ensureDeferred(embedder())) == "done"
