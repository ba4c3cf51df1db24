"""
The fault proxy (muxpool.testing.FaultProxy) between a client and an echo
server on 127.0.0.1: each fault does what it says, on open connections as
on new ones, and is lifted again.
"""

import time

import pytest
import pytest_twisted
from twisted.application.service import IService
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.protocols.wire import Echo
from zope.interface.verify import verifyObject

from muxpool.testing import DOWNSTREAM, UPSTREAM, FaultProxy


def reactor():
    from twisted.internet import reactor

    return reactor


class Client(protocol.Protocol):
    def __init__(self):
        self.received = b""
        self.reads = 0
        self.lost = defer.Deferred()
        self.waiting = None

    def dataReceived(self, data):
        self.received += data
        self.reads += 1
        if self.waiting is not None and len(self.received) >= self.waiting[0]:
            d, self.waiting = self.waiting[1], None
            d.callback(self.received)

    def receive(self, n):
        if len(self.received) >= n:
            return defer.succeed(self.received)
        self.waiting = (n, defer.Deferred())
        return self.waiting[1]

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)  # a Failure would errback it


class Counting(protocol.Protocol):
    def dataReceived(self, data):
        self.factory.received += data

    def connectionLost(self, reason):
        self.factory.closed.callback(None)


@pytest.fixture
def echo():
    factory = protocol.Factory.forProtocol(Echo)
    port = reactor().listenTCP(0, factory, interface="127.0.0.1")
    yield port.getHost().port
    port.stopListening()


@pytest.fixture
def proxy(echo):
    made = FaultProxy(reactor(), echo, seed=1)
    made.startService()
    yield made
    made.stopService()


def connect(port):
    return connectProtocol(TCP4ClientEndpoint(reactor(), "127.0.0.1", port), Client())


def test_it_is_a_service(proxy):
    assert verifyObject(IService, proxy)


@pytest_twisted.inlineCallbacks
def test_bytes_pass_unchanged_both_ways(proxy):
    client = yield connect(proxy.port)
    client.transport.write(b"x" * 10000)
    got = yield client.receive(10000)
    assert got == b"x" * 10000
    assert proxy.relayed == {UPSTREAM: 10000, DOWNSTREAM: 10000}
    client.transport.loseConnection()
    yield client.lost


@pytest_twisted.inlineCallbacks
def test_latency_holds_each_chunk_in_order(proxy):
    proxy.latency(0.2, jitter=0.05, direction=DOWNSTREAM)
    client = yield connect(proxy.port)
    started = time.monotonic()
    for i in range(10):  # each its own read, 10 ms apart: less than the jitter
        client.transport.write(b"%d" % i)
        yield deferLater(reactor(), 0.01)
    got = yield client.receive(10)
    assert got == b"0123456789"
    assert time.monotonic() - started >= 0.15
    client.transport.loseConnection()
    yield client.lost


@pytest_twisted.inlineCallbacks
def test_bandwidth_limits_the_rate(proxy):
    proxy.bandwidth(20000, direction=UPSTREAM)
    client = yield connect(proxy.port)
    started = time.monotonic()
    client.transport.write(b"y" * 6000)
    yield client.receive(6000)
    assert time.monotonic() - started >= 0.25  # 6000 bytes at 20 kB/s
    client.transport.loseConnection()
    yield client.lost


@pytest_twisted.inlineCallbacks
def test_a_limited_direction_slows_its_writer(proxy):
    proxy.bandwidth(50000, direction=UPSTREAM)
    client = yield connect(proxy.port)
    client.transport.write(b"z" * 2000000)
    yield deferLater(reactor(), 0.3)
    assert proxy.held(UPSTREAM) < 200000  # not the two megabytes: the client is no longer read
    client.transport.abortConnection()
    yield client.lost


@pytest_twisted.inlineCallbacks
def test_a_blackhole_swallows_while_the_connection_stays_up_then_lifts(proxy):
    client = yield connect(proxy.port)
    proxy.blackhole()
    client.transport.write(b"lost")
    yield deferLater(reactor(), 0.2, lambda: None)
    assert client.received == b""
    assert proxy.swallowed[UPSTREAM] == 4
    assert proxy.connections == 1 and not client.lost.called
    yield proxy.clear()
    client.transport.write(b"back")
    assert (yield client.receive(4)) == b"back"
    client.transport.loseConnection()
    yield client.lost


@pytest_twisted.inlineCallbacks
def test_reset_sends_a_tcp_reset(proxy):
    client = yield connect(proxy.port)
    client.transport.write(b"a")
    yield client.receive(1)
    assert proxy.reset() == 1
    yield client.lost
    reason = client.reason
    assert reason.check(error.ConnectionLost) and not reason.check(error.ConnectionDone)
    assert proxy.connections == 0


@pytest_twisted.inlineCallbacks
def test_close_after_delivers_that_many_bytes_then_closes(echo):
    received = protocol.Factory.forProtocol(Counting)
    received.received = b""
    received.closed = defer.Deferred()
    port = reactor().listenTCP(0, received, interface="127.0.0.1")
    proxy = FaultProxy(reactor(), port.getHost().port)
    proxy.startService()
    try:
        proxy.closeAfter(5, direction=UPSTREAM)
        client = yield connect(proxy.port)
        client.transport.write(b"0123456789")
        yield client.lost
        yield received.closed  # the server side read what it was given, then its close
        assert received.received == b"01234"
    finally:
        yield proxy.stopService()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_sliced_writes_arrive_in_pieces(proxy):
    proxy.slice(4, delay=0.02, direction=DOWNSTREAM)
    client = yield connect(proxy.port)
    client.transport.write(b"0123456789abcdef")
    assert (yield client.receive(16)) == b"0123456789abcdef"
    assert client.reads >= 3
    client.transport.loseConnection()
    yield client.lost


@pytest_twisted.inlineCallbacks
def test_refusing_closes_the_port_to_new_connections_only(proxy):
    open_ = yield connect(proxy.port)
    yield proxy.refuse()
    with pytest.raises(error.ConnectionRefusedError):
        yield connect(proxy.port)
    open_.transport.write(b"still")
    assert (yield open_.receive(5)) == b"still"
    yield proxy.refuse(False)
    again = yield connect(proxy.port)
    again.transport.write(b"ok")
    assert (yield again.receive(2)) == b"ok"
    for c in (open_, again):
        c.transport.loseConnection()
        yield c.lost


@pytest_twisted.inlineCallbacks
def test_clear_right_after_refuse_listens_again_on_the_same_port(proxy):
    port = proxy.port
    proxy.refuse()
    yield proxy.clear()  # not waiting for the refusal first
    assert proxy.port == port
    client = yield connect(port)
    client.transport.write(b"ok")
    assert (yield client.receive(2)) == b"ok"
    client.transport.loseConnection()
    yield client.lost


@pytest_twisted.inlineCallbacks
def test_close_after_stops_passing_bytes_at_the_limit_even_with_traffic_back(proxy):
    proxy.closeAfter(3, direction=UPSTREAM)
    proxy.latency(0.5, direction=DOWNSTREAM)  # the echo is still owed
    client = yield connect(proxy.port)
    client.transport.write(b"abcdef")
    yield client.lost
    assert proxy.relayed[UPSTREAM] == 3


@pytest_twisted.inlineCallbacks
def test_an_unreachable_server_closes_the_client():
    free = reactor().listenTCP(0, protocol.Factory(), interface="127.0.0.1")
    dead = free.getHost().port
    yield free.stopListening()
    proxy = FaultProxy(reactor(), dead)
    proxy.startService()
    try:
        client = yield connect(proxy.port)
        yield client.lost
        assert proxy.connections == 0
    finally:
        yield proxy.stopService()


def test_an_unknown_direction_is_named():
    proxy = FaultProxy(reactor(), 1)
    with pytest.raises(ValueError, match="'sideways'"):
        proxy.latency(1, direction="sideways")
