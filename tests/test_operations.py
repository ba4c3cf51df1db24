"""
What an operator does, in memory: enable, disable and drain a MUX in every
pool it is in, the status of every bean, Prometheus metrics, and which admin
endpoints may go without a token.
"""

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from muxpool.mux import QMUX, MUXPool, strategyByName
from muxpool.ops import (
    AdminConfigError,
    DrainTimeout,
    Operations,
    UnknownMUX,
    checkEndpoint,
    metricsText,
)
from muxpool.registry import Registry
from muxpool.testing import MemoryLink, answer
from tests.helpers import started
from tests.logcapture import capturedText


def request(stan):
    return {"t": "0200", "11": "%06d" % stan, "41": "TERM0001", "2": "4761739001010119"}


def switch():
    clock = Clock()
    registry = Registry()
    links = [MemoryLink(f"link-{i}") for i in (1, 2)]
    muxes = [started(QMUX(f"mux-{i}", link, clock)) for i, link in zip((1, 2), links)]
    pools = [
        started(MUXPool("pool-a", muxes, clock, strategyByName("round-robin"))),
        started(MUXPool("pool-b", [muxes[0]], clock)),
    ]
    for service in muxes + pools:
        registry.register(service.name, service)
    return Operations(registry, clock), clock, links, muxes, pools


def test_disable_and_enable_in_every_pool():
    ops, clock, links, muxes, (a, b) = switch()
    assert ops.disable("mux-1") == ["pool-a", "pool-b"]
    assert not a.isUsable(muxes[0]) and not b.isUsable(muxes[0]) and not b.ready
    assert ops.enable("mux-1") == ["pool-a", "pool-b"]
    assert a.isUsable(muxes[0]) and b.ready
    with pytest.raises(UnknownMUX, match="no MUX named 'ghost' .*mux-1, mux-2, pool-a, pool-b"):
        ops.disable("ghost")


def test_drain_answers_when_nothing_is_in_flight():
    ops, clock, links, muxes, (a, b) = switch()
    a.request(request(1), 30)  # round-robin: mux-1
    assert muxes[0].pendingCount() == 1
    drained = []
    ops.drain("mux-1", 10).addBoth(drained.append)
    status = ops.status()
    assert [m["state"] for m in status["pools"][0]["members"]] == ["draining", "up"]
    assert drained == []
    links[0].deliver(answer(links[0].sent[0]))
    assert drained == [["pool-a", "pool-b"]]
    assert [m["state"] for m in ops.status()["pools"][0]["members"]] == ["disabled", "up"]


def test_drain_gives_up_after_its_timeout():
    ops, clock, links, muxes, (a, b) = switch()
    a.request(request(1), 60)
    drained = []
    ops.drain("mux-1", 10).addBoth(drained.append)
    clock.advance(10)
    assert drained[0].check(DrainTimeout) and "1 requests still in flight" in str(drained[0].value)


def test_status_of_every_bean_has_no_card_data():
    ops, clock, links, muxes, (a, b) = switch()
    a.request(request(1), 30)
    links[0].deliver(answer(links[0].sent[0]))
    status = ops.status()
    assert [m["name"] for m in status["muxes"]] == ["mux-1", "mux-2"]
    mux = status["muxes"][0]
    assert mux["pools"] == ["pool-a", "pool-b"] and mux["enabled"] and not mux["draining"]
    assert mux["counters"]["rx"] == 1 and mux["latency"]["count"] == 1
    assert status["pools"][0]["strategy"] == "round-robin"
    assert "4761739001010119" not in repr(status)


def test_metrics_are_prometheus_text_and_count_what_happened():
    ops, clock, links, muxes, (a, b) = switch()
    for i in range(4):
        a.request(request(i), 30)
    clock.advance(0.02)
    for link in links:
        for message in link.sent:
            link.deliver(answer(message))
    families = {f.name: f for f in text_string_to_metric_families(metricsText(ops).decode())}
    requests = {
        tuple(sorted(s.labels.items())): s.value for s in families["muxpool_pool_requests"].samples
    }
    assert requests[(("member", "mux-1"), ("pool", "pool-a"))] == 2
    histogram = {
        (s.name, s.labels.get("le")): s.value
        for s in families["muxpool_mux_request_duration_seconds"].samples
        if s.labels["mux"] == "mux-1"
    }
    assert histogram[("muxpool_mux_request_duration_seconds_count", None)] == 2
    assert histogram[("muxpool_mux_request_duration_seconds_bucket", "0.01")] == 0
    assert histogram[("muxpool_mux_request_duration_seconds_bucket", "0.025")] == 2
    assert families["muxpool_mux_requests"].type == "counter"


@pytest.mark.parametrize(
    "endpoint,token,ok",
    [
        ("tcp:8080:interface=127.0.0.1", None, True),
        ("tcp6:8080:interface=\\:\\:1", None, True),
        ("unix:/run/muxpool/admin.sock", None, True),
        ("tcp:8080", None, False),
        ("tcp:8080:interface=0.0.0.0", None, False),
        ("tcp:8080:interface=10.0.0.5", None, False),
        ("tcp:8080", "a-token", True),
    ],
)
def test_without_a_token_the_admin_api_stays_on_this_machine(endpoint, token, ok):
    if ok:
        checkEndpoint(endpoint, token)
    else:
        with pytest.raises(AdminConfigError, match="token"):
            checkEndpoint(endpoint, token)


def test_a_drain_timeout_must_make_sense():
    from twisted.web.test.requesthelper import DummyRequest

    from muxpool.ops import AdminResource

    ops, clock, links, muxes, (a, b) = switch()
    root = AdminResource(ops)
    for bad in (b"-1", b"nan", b"soon"):
        request = DummyRequest([b"muxes", b"mux-1", b"drain"])
        request.method = b"POST"
        request.args = {b"timeout": [bad]}
        resource = root.getChildWithDefault(b"muxes", request)
        request.postpath = [b"mux-1", b"drain"]
        body = resource.render(request)
        assert request.responseCode == 400 and b"timeout must be" in body
    assert a.isUsable(muxes[0])  # refused before anything was disabled


def adminConnection(token="secret"):
    """
    One connection to an admin API's site, on a string transport.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from muxpool.ops import AdminService

    ops, *_ = switch()
    service = AdminService("tcp:0:interface=127.0.0.1", ops, MemoryReactorClock(), token)
    protocol = service.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


@pytest.mark.parametrize(
    "length",
    [b"content-length: 1073741824", b"transfer-encoding: chunked"],
)
def test_a_wrong_token_is_refused_before_the_body_is_read(length):
    """
    A request with a body and a wrong token is answered 401 as soon as its
    headers are in, and the connection closed: its body (a gigabyte, or
    chunks without end) is never read, nor written to a file.
    """
    protocol, transport = adminConnection()
    protocol.dataReceived(
        b"POST /muxes/mux-1/drain HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\n"
        + length
        + b"\r\n\r\n"
    )
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 401 ") and b"--token-file" in answer
    assert transport.disconnecting


def test_a_body_larger_than_the_limit_is_refused_even_with_the_token():
    protocol, transport = adminConnection()
    protocol.dataReceived(
        b"POST /muxes/mux-1/drain HTTP/1.1\r\nhost: x\r\nauthorization: Bearer secret\r\n"
        b"content-length: 1073741824\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 413 ") and transport.disconnecting


def test_the_right_token_is_served():
    protocol, transport = adminConnection()
    protocol.dataReceived(
        b"POST /muxes/mux-1/disable HTTP/1.1\r\nhost: x\r\nauthorization: Bearer secret\r\n"
        b"content-length: 0\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 200 ")


def test_status_columns_line_up_whatever_the_names():
    """
    `muxpool status` lines its columns up however long the names are.
    """
    from muxpool.ops import renderStatus

    long = "core-mux-a-member-whose-name-is-long-indeed"
    status = {
        "pools": [
            {
                "name": "core-mux",
                "strategy": "round-robin",
                "in_flight": 0,
                "usable": True,
                "members": [
                    {"name": long, "state": "up", "in_flight": 0, "requests": 5},
                    {"name": "m2", "state": "down", "in_flight": 0, "requests": 7},
                ],
            }
        ],
        "channels": [
            {"name": long + "-channel", "ready": True, "target": "tcp:a:1"},
            {"name": "c2", "ready": False, "target": "tcp:b:2"},
        ],
        "servers": [
            {"name": "front", "listening": "127.0.0.1:8000", "sessions": 1, "in_flight": 0}
        ],
    }
    lines = renderStatus(status).splitlines()
    members = [line for line in lines if line.startswith("  ")]
    assert members[0].index("up") == members[1].index("down")
    beans = [line for line in lines if line.startswith(("channel", "server"))]
    assert beans[0].index("ready") == beans[1].index("NOT READY") == beans[2].index("127.0.0.1")


def test_a_taken_admin_port_is_tried_again_until_it_is_free():
    """
    A port another process holds is said once (not per attempt), tried
    again with a growing delay, and taken once it is free; a stop while
    waiting stops trying.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.defer import fail, succeed
    from twisted.internet.error import CannotListenError

    from muxpool.ops import AdminService

    class Port:
        def getHost(self):
            return IPv4Address("TCP", "127.0.0.1", 9999)

        def stopListening(self):
            return succeed(None)

    class Endpoint:
        attempts = []
        free = False

        def listen(self, factory):
            self.attempts.append(clock.seconds())
            if self.free:
                return succeed(Port())
            return fail(CannotListenError("127.0.0.1", 9999, OSError("Address already in use")))

    clock = Clock()
    ops, *_ = switch()
    service = AdminService("tcp:0:interface=127.0.0.1", ops, clock)
    endpoint = Endpoint()
    service.endpoint._endpoint = endpoint
    with capturedText() as lines:
        service.startService()
        clock.pump([0.5] * 20)  # 10 s
        assert service.port is None and len(endpoint.attempts) == 4  # at 0, 1, 3, 7 s
        endpoint.free = True
        listening = []
        service.whenListening().addCallback(listening.append)
        clock.advance(30)
    assert listening and service.port is listening[0]
    failed = [x for x in lines if "admin API cannot listen on tcp:0" in x]
    assert len(failed) == 1 and "Address already in use" in failed[0], lines
    assert any("admin API on 127.0.0.1:9999 (after 4 failed attempts)" in x for x in lines)
    stopped = []
    service.stopService().addCallback(stopped.append)
    assert stopped == [None]
    # stopped while waiting to try again: nothing more is tried
    endpoint.free = False
    service.startService()
    service.stopService()
    count = len(endpoint.attempts)
    clock.advance(60)
    assert len(endpoint.attempts) == count


def test_admin_requests_have_a_deadline():
    """
    Headers, or a body, trickled a byte a second (each byte within the idle
    timeout) close the connection REQUEST_TIMEOUT after the request's first
    byte; a request that arrives in time is answered, and the next request
    on the connection gets its own deadline.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from muxpool.ops import AdminService

    REQUEST_TIMEOUT = 10  # seconds, as README says
    clock = MemoryReactorClock()
    ops, *_ = switch()
    service = AdminService("tcp:0:interface=127.0.0.1", ops, clock)

    def connection():
        protocol = service.connections.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    protocol, transport = connection()
    request = b"GET /status HTTP/1.1\r\nhost: x\r\n\r\n"
    for byte in request[:REQUEST_TIMEOUT]:
        assert not transport.disconnecting
        protocol.dataReceived(bytes([byte]))
        clock.advance(1)
    assert transport.disconnecting and transport.value() == b""

    protocol, transport = connection()
    clock.advance(REQUEST_TIMEOUT - 1)
    protocol.dataReceived(request)
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    transport.clear()
    clock.advance(20)  # idle between requests, within the idle timeout
    protocol.dataReceived(request[:5])
    clock.advance(REQUEST_TIMEOUT - 1)
    protocol.dataReceived(request[5:])
    assert transport.value().startswith(b"HTTP/1.1 200 ") and not transport.disconnecting
    transport.clear()
    body = b"POST /undrain HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n"
    protocol.dataReceived(body)  # the headers come whole, the body a byte at a time
    for _ in range(REQUEST_TIMEOUT):
        assert not transport.disconnecting
        protocol.dataReceived(b"x")
        clock.advance(1)
    assert transport.disconnecting and transport.value() == b""
