"""
The PROXY protocol at the front: a balancer in C{proxy-from} must send a
valid header first, and the session is then the client's it names.
"""

import struct

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection

from muxpool.channel import ChannelSpec, ProxyHeader, ProxyHeaderError, readProxyHeader
from muxpool.iso import sampleRequest
from muxpool.link import QServer, ServerSettings
from muxpool.listeners import Responder
from tests.logcapture import capturedText

SPEC = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(host=(127, 0, 0, 2), port=40000, command=0x21, family=0x11):
    body = bytes(host) + bytes([127, 0, 0, 1]) + struct.pack("!HH", port, 8000)
    if command == 0x20:
        body = b""
    return SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body


def test_headers_are_read_whole_or_waited_for():
    line = b"PROXY TCP4 10.1.2.3 10.0.0.1 40000 8000\r\n"
    assert readProxyHeader(line + b"more") == (
        ProxyHeader("v1", False, "10.1.2.3", 40000),
        len(line),
    )
    assert readProxyHeader(b"PROXY UNKNOWN\r\n") == (ProxyHeader("v1", False), 15)
    assert readProxyHeader(v2()) == (ProxyHeader("v2", False, "127.0.0.2", 40000), 28)
    assert readProxyHeader(v2(command=0x20, family=0)) == (ProxyHeader("v2", True), 16)
    six = SIGNATURE + bytes([0x21, 0x21]) + struct.pack("!H", 36) + bytes(15) + b"\x01" * 17
    six += struct.pack("!HH", 5555, 8000)
    assert readProxyHeader(six)[0] == ProxyHeader("v2", False, "::1", 5555, True)
    for part in (line[:10], v2()[:5], v2()[:20], b""):
        assert readProxyHeader(part) is None


@pytest.mark.parametrize(
    "data,versions,error",
    [
        (b"0200\x00", ("v1", "v2"), "no PROXY v1 or v2 header"),
        (b"PROXY TCP4 10.1.2.3 10.0.0.1 40000 8000\r\n", ("v2",), "no PROXY v2 header"),
        (v2(), ("v1",), "no PROXY v1 header"),
        (b"PROXY TCP4 nonsense 10.0.0.1 1 2\r\n", ("v1",), "bad address or port"),
        (b"PROXY " + b"x" * 200, ("v1",), "longer than 107 bytes"),
        (SIGNATURE + b"\x31\x11\x00\x0c", ("v2",), "version/command byte 0x31"),
        (SIGNATURE + b"\x21\x11\xff\xff", ("v2",), "at most"),
        (v2(family=0x12), ("v2",), "not TCP"),
    ],
)
def test_bad_headers_say_what_is_wrong(data, versions, error):
    with pytest.raises(ProxyHeaderError, match=error):
        readProxyHeader(data, versions)


def server(**settings):
    reactor = MemoryReactorClock()
    server = QServer(
        "front",
        SPEC,
        "tcp:0",
        reactor,
        ServerSettings(proxyProtocol="v2", proxyFrom=("127.0.0.1",), **settings),
        listeners=[Responder()],
    )
    server.startService()
    return server, reactor


def connect(reactor, host="127.0.0.1", port=5000):
    factory = reactor.tcpServers[0][1]  # what the server listens with
    address = IPv4Address("TCP", host, port)
    protocol = factory.buildProtocol(address)
    transport = StringTransportWithDisconnection(peerAddress=address)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


def answers(transport):
    data, found = transport.value(), []
    offset = 0
    while offset < len(data):
        frame, offset = SPEC.framing.nextFrame(data, offset, 100000)
        found.append(SPEC.decode(frame))
    return found


def test_a_session_through_the_balancer_is_the_clients():
    front, reactor = server()
    protocol, transport = connect(reactor)
    with capturedText() as lines:
        protocol.dataReceived(v2()[:10])
        protocol.dataReceived(v2()[10:] + SPEC.encode(sampleRequest(1)))
    assert [m["39"] for m in answers(transport)] == ["00"]
    assert [p["peer"] for p in front.status()["peers"]] == ["127.0.0.2:40000"]
    assert any("session from 127.0.0.2:40000" in line for line in lines), lines


def test_allow_and_deny_apply_to_the_client_it_names():
    front, reactor = server(deny=("127.0.0.2",))
    protocol, transport = connect(reactor)
    with capturedText() as lines:
        protocol.dataReceived(v2() + SPEC.encode(sampleRequest(1)))
    assert transport.value() == b"" and not transport.connected
    assert any("refused connection from 127.0.0.2: denied" in line for line in lines), lines
    protocol, transport = connect(reactor)
    protocol.dataReceived(v2(host=(127, 0, 0, 3)) + SPEC.encode(sampleRequest(1)))
    assert [m["39"] for m in answers(transport)] == ["00"]


def test_a_balancer_without_a_header_is_refused_and_a_health_check_is_quiet():
    front, reactor = server()
    protocol, transport = connect(reactor)
    with capturedText() as lines:
        protocol.dataReceived(SPEC.encode(sampleRequest(1)))
    assert transport.value() == b"" and not transport.connected
    assert any("refused connection from 127.0.0.1:5000: no PROXY v2 header" in x for x in lines)
    protocol, transport = connect(reactor)
    with capturedText() as lines:
        protocol.dataReceived(v2(command=0x20, family=0))
        protocol.connectionLost(None)
    assert lines == [] and not transport.connected and front.counters["proxy_local"] == 1
    protocol, transport = connect(reactor)  # a header that never comes whole
    protocol.dataReceived(v2()[:20])
    reactor.advance(5)
    assert not transport.connected and front.counters["refused"] == 2


def test_others_connect_as_before_and_the_setting_is_checked():
    front, reactor = server()
    protocol, transport = connect(reactor, host="127.0.0.9")
    protocol.dataReceived(SPEC.encode(sampleRequest(1)))
    assert [m["39"] for m in answers(transport)] == ["00"]
    with pytest.raises(ValueError, match="proxy-protocol 'v3': use one of v1, v2, any"):
        ServerSettings(proxyProtocol="v3", proxyFrom="10.0.0.1")
    with pytest.raises(ValueError, match="proxy-protocol needs proxy-from"):
        ServerSettings(proxyProtocol="v2")


def test_a_header_naming_no_client_is_the_balancers_session():
    front, reactor = server()
    protocol, transport = connect(reactor)
    with capturedText() as lines:
        unspec = SIGNATURE + bytes([0x21, 0x00, 0, 0])  # PROXY, family UNSPEC
        protocol.dataReceived(unspec + SPEC.encode(sampleRequest(1)))
    assert [m["39"] for m in answers(transport)] == ["00"]
    assert [p["peer"] for p in front.status()["peers"]] == ["127.0.0.1:5000"]
    assert any("names no client address" in line for line in lines), lines


def test_a_header_that_comes_after_the_stop_began_opens_no_session():
    front, reactor = server()
    protocol, transport = connect(reactor)
    protocol.dataReceived(v2()[:10])
    waiting = []
    front.stopService().addCallback(waiting.append)
    assert not transport.connected and front.proxied == set()
    protocol, transport = connect(reactor)  # accepted just before the port closed
    protocol.dataReceived(v2())
    assert not transport.connected and front.sessions == {}
