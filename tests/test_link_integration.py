"""
One link end to end on real loopback sockets: QServer + Responder, and a
ChannelAdaptor + QMUX client.
"""

import socket

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.python.failure import Failure

from muxpool.app import runLoad, sampleRequest
from muxpool.channel import ChannelSpec
from muxpool.errors import LinkLost, LinkNotReady
from muxpool.listeners import Responder
from muxpool.testing import portOf, startIssuer, startLink
from tests.helpers import whenInFlight


def reactor():
    from twisted.internet import reactor

    return reactor


@pytest_twisted.inlineCallbacks
def test_twenty_thousand_requests_two_hundred_in_flight():
    r = reactor()
    server = yield startIssuer(r)
    adaptor, mux = startLink(r, portOf(server))
    try:
        yield adaptor.ready.whenState(True)
        outcomes = yield runLoad(mux, 20000, 200)
        assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes)
        assert [o["11"] for o in outcomes[:3]] == ["000000", "000001", "000002"]
        counters = mux.counters
        assert counters["tx"] == 20000 and counters["rx"] == 20000
        assert counters["rx_expired"] == counters["tx_expired"] == 0
        assert counters["rx_unhandled"] == 0 and counters["rx_pending"] == 0
        assert counters["tx_pending"] == 0
        assert server.counters["rx"] == 20000
        assert mux.latency.summary()["count"] == 20000
    finally:
        yield adaptor.stopService()
        yield server.stopService()


@pytest_twisted.inlineCallbacks
def test_server_killed_mid_stream_then_back():
    """
    Every in-flight request gets an outcome when the server dies; the
    adaptor reconnects when it returns and traffic resumes.
    """
    r = reactor()
    server = yield startIssuer(r, listeners=[Responder(delay=0.002, clock=r)])
    port = portOf(server)
    adaptor, mux = startLink(r, port)
    try:
        yield adaptor.ready.whenState(True)
        killed = []

        def onEach(i, result):
            if i == 300 and not killed:  # kill the server mid-stream
                killed.append(server.stopService())

        server.gracePeriod = 0
        outcomes = yield runLoad(mux, 500, 50, timeout=1.0, onEach=onEach)
        yield killed[0]
        assert all(o is not None for o in outcomes)
        answered = [o for o in outcomes if isinstance(o, dict)]
        failures = [o for o in outcomes if isinstance(o, Failure)]
        assert len(answered) >= 300 and failures
        for f in failures:
            assert f.check(LinkLost, LinkNotReady)
        assert mux.pendingCount() == 0
        assert not adaptor.ready

        server2 = yield startIssuer(r, port=port)
        try:
            yield adaptor.ready.whenState(True)
            outcomes = yield runLoad(mux, 200, 20, start=5000)
            assert all(isinstance(o, dict) for o in outcomes)
            assert adaptor.counters["connects"] >= 2
        finally:
            yield server2.stopService()
    finally:
        yield adaptor.stopService()


class SilentOnEcho:
    """
    Swallows network-management requests: a peer that keeps TCP open but
    no longer answers echoes.
    """

    def process(self, source, message):
        return message["t"] == "0800"


@pytest_twisted.inlineCallbacks
def test_dead_peer_detected_by_echo():
    r = reactor()
    server = yield startIssuer(r, listeners=[SilentOnEcho(), Responder()])
    adaptor, mux = startLink(
        r,
        portOf(server),
        echoInterval=0.2,
        echoTimeout=0.3,
        reconnectDelay=5,
        maxReconnectDelay=5,
    )
    try:
        yield adaptor.ready.whenState(True)
        yield adaptor.ready.whenState(False)
        assert adaptor.counters["echo_failures"] == 1
    finally:
        yield adaptor.stopService()
        yield server.stopService()


@pytest_twisted.inlineCallbacks
def test_sign_on_before_ready():
    r = reactor()
    server = yield startIssuer(r)
    adaptor, mux = startLink(r, portOf(server), signOn=True, echoTimeout=2)
    try:
        yield adaptor.ready.whenState(True)
        assert server.counters["rx"] == 1  # the sign-on
        response = yield mux.request(sampleRequest(1), 5)
        assert response["39"] == "00"
    finally:
        yield adaptor.stopService()
        yield server.stopService()


@pytest_twisted.inlineCallbacks
def test_garbage_client_disconnected_other_client_unharmed():
    r = reactor()
    ascii = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
    server = yield startIssuer(r, spec=ascii)
    adaptor, mux = startLink(r, portOf(server), spec=ascii)
    try:
        yield adaptor.ready.whenState(True)
        sock = socket.create_connection(("127.0.0.1", portOf(server)))
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
            sock.settimeout(5)
            closed = yield r_recv(sock)
            assert closed == b""
        finally:
            sock.close()
        outcomes = yield runLoad(mux, 500, 50)
        assert all(isinstance(o, dict) for o in outcomes)
    finally:
        yield adaptor.stopService()
        yield server.stopService()


def r_recv(sock):
    from twisted.internet.threads import deferToThread

    return deferToThread(sock.recv, 100)


@pytest_twisted.inlineCallbacks
def test_max_sessions_refuses_extra():
    r = reactor()
    server = yield startIssuer(r, maxSessions=1)
    first, mux1 = startLink(r, portOf(server), name="first")
    try:
        yield first.ready.whenState(True)
        sock = socket.create_connection(("127.0.0.1", portOf(server)))
        try:
            sock.settimeout(5)
            assert (yield r_recv(sock)) == b""
        finally:
            sock.close()
        assert server.counters["refused"] == 1
        assert len(server.sessions) == 1
        response = yield mux1.request(sampleRequest(1), 5)
        assert response["39"] == "00"
    finally:
        yield first.stopService()
        yield server.stopService()


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


@pytest_twisted.inlineCallbacks
def test_server_stop_lets_in_flight_finish():
    from zope.interface.verify import verifyObject

    from muxpool.channel import IChannelOwner
    from muxpool.interfaces import ILink, ISource

    r = reactor()
    server = yield startIssuer(r, listeners=[Responder(delay=0.3, clock=r)], gracePeriod=5)
    adaptor, mux = startLink(r, portOf(server), reconnectDelay=5, maxReconnectDelay=5)
    try:
        yield adaptor.ready.whenState(True)
        [session] = server.sessions.values()
        assert verifyObject(ILink, session) and verifyObject(ISource, session)
        assert verifyObject(IChannelOwner, server)
        pending = [mux.request(sampleRequest(i), 5) for i in range(5)]
        yield whenInFlight(server, 5)
        yield server.stopService()
        results = yield defer.gatherResults(pending)
        assert [m["39"] for m in results] == ["00"] * 5
        assert server.sessions == {}
    finally:
        yield adaptor.stopService()


@pytest_twisted.ensureDeferred
async def test_usable_from_async_def():
    """
    Embedding code awaits requests; failures arrive as the outcome types.
    """
    from muxpool import MissingKey

    r = reactor()
    server = await startIssuer(r)
    adaptor, mux = startLink(r, portOf(server))
    try:
        await adaptor.ready.whenState(True)
        response = await mux.request(sampleRequest(7), 5)
        assert response["39"] == "00" and response["11"] == "000007"
        with pytest.raises(MissingKey):
            await mux.request({"t": "0200", "3": "000000"}, 5)
    finally:
        await adaptor.stopService()
        await server.stopService()
