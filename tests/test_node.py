"""
The node as a balancer sees it: readiness (every server listening, every
MUX a Forward names usable), a drain of the whole node, the admin probes
and HAProxy's agent check.
"""

import json

import pytest_twisted
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from muxpool.channel import ChannelSpec
from muxpool.link import QServer, ServerSettings
from muxpool.listeners import Forward
from muxpool.mux import QMUX, MUXPool, strategyByName
from muxpool.ops import AdminService, AgentService, NodeState, Operations
from muxpool.registry import Registry
from muxpool.testing import MemoryLink
from tests.helpers import started

SPEC = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")


def node(maxSessions=10):
    reactor = MemoryReactorClock()
    registry = Registry()
    link = MemoryLink("link")
    mux = started(QMUX("mux", link, reactor))
    pool = started(MUXPool("pool", [mux], reactor, strategyByName("round-robin")))
    server = QServer(
        "front",
        SPEC,
        "tcp:0",
        reactor,
        ServerSettings(maxSessions=maxSessions),
        listeners=[Forward("pool", resolve=registry.getMUX)],
    )
    for bean in (mux, pool, server):
        registry.register(bean.name, bean)
    return Operations(registry, reactor), reactor, link, server


def test_ready_while_servers_listen_and_their_pools_are_usable():
    ops, reactor, link, server = node()
    state = ops.node
    assert state.readiness() == (False, "server front is not listening")
    server.startService()
    assert state.readiness() == (True, "ready")
    assert state.agentWord() == "ready up maxconn:10"
    link.ready.set(False)
    assert state.readiness() == (False, "server front forwards to pool, which is not usable")
    assert state.agentWord() == "down"
    link.ready.set(True)
    ops.registry.unregister("pool")
    assert state.readiness() == (False, "server front forwards to pool, which is not deployed")


def test_a_drained_node_says_drain_until_undrained_but_not_once_stopping():
    ops, reactor, link, server = node()
    server.startService()
    state = ops.node
    assert state.drain() and not state.drain()
    assert state.readiness() == (False, "draining") and state.agentWord() == "drain"
    assert state.undrain() and state.readiness() == (True, "ready")
    state.drain("SIGTERM")
    state.stopping = True
    assert not state.undrain() and state.agentWord() == "drain"
    assert state.readiness() == (False, "stopping")


def test_no_server_is_not_ready():
    assert NodeState(Registry()).readiness() == (False, "no server deployed")


def admin(ops, reactor, token=None):
    service = AdminService("tcp:0:interface=127.0.0.1", ops, reactor, token)

    def call(method, path, token=None):
        protocol = service.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        protocol.makeConnection(transport)
        auth = f"authorization: Bearer {token}\r\n".encode() if token else b""
        protocol.dataReceived(
            method + b" " + path + b" HTTP/1.1\r\nhost: x\r\n" + auth + b"content-length: 0\r\n\r\n"
        )
        head, _, body = transport.value().partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), json.loads(body)

    return call


def test_admin_probes_and_node_drain():
    ops, reactor, link, server = node()
    server.startService()
    call = admin(ops, reactor, token="secret")
    # the probes need no token; a drain does
    assert call(b"GET", b"/ready") == (200, {"ready": True, "reason": "ready", "session_limit": 10})
    assert call(b"GET", b"/live") == (200, {"live": True})
    assert call(b"POST", b"/drain")[0] == 401
    code, body = call(b"POST", b"/drain", "secret")
    assert code == 200 and body["draining"] and body["changed"] and not body["ready"]
    assert call(b"GET", b"/ready")[1]["reason"] == "draining"
    assert call(b"GET", b"/drain", "secret")[0] == 405
    assert call(b"POST", b"/undrain", "secret")[0] == 200
    assert call(b"GET", b"/ready")[0] == 200
    assert ops.status()["node"] == {"ready": True, "reason": "ready", "draining": False}


class Line(Protocol):
    def connectionMade(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.factory.done.callback(self.data)


@pytest_twisted.inlineCallbacks
def test_the_agent_answers_one_line_per_connection():
    from twisted.internet import reactor

    ops, _, link, server = node()
    server.startService()
    agent = AgentService("tcp:0:interface=127.0.0.1", ops.node, reactor)
    agent.startService()
    try:
        port = (yield agent._waitingForPort).getHost().port
        lines = []
        for change in (None, ops.node.drain, lambda: link.ready.set(False) or ops.node.undrain()):
            if change is not None:
                change()
            factory = ClientFactory.forProtocol(Line)
            factory.done = defer.Deferred()
            reactor.connectTCP("127.0.0.1", port, factory)
            lines.append((yield factory.done))
    finally:
        yield agent.stopService()
    assert lines == [b"ready up maxconn:10\n", b"drain\n", b"down\n"]
