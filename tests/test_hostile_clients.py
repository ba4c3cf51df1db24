"""
Issue 9: hostile clients on a real port, each while a well-behaved client
runs.  The well-behaved client keeps being answered, and each hostile session
is closed within its timeout; one that never reads its answers costs the
switch bounded memory.
"""

import json
import select
import socket
import time

import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.listeners import Responder
from muxpool.testing import portOf, startIssuer, startLink
from tests.deployfiles import singleIssuerSwitch
from tests.twistdproc import Twistd, tool

ASCII = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")


def reactor():
    from twisted.internet import reactor

    return reactor


class Raw(protocol.Protocol):
    """
    A hostile client: writes what it is told, notes when it was closed.
    """

    def __init__(self):
        self.closed = defer.Deferred()
        self.opened = None

    def connectionMade(self):
        self.opened = reactor().seconds()

    def connectionLost(self, reason):
        self.closed.callback(reactor().seconds() - self.opened)


def raw(port, opened):
    """
    A L{Raw} client connected to C{port}, also added to C{opened} (so the
    test can close what is still open, however it ends).
    """
    client = Raw()
    opened.append(client)
    return connectProtocol(TCP4ClientEndpoint(reactor(), "127.0.0.1", port), client)


def closeAll(clients):
    for client in clients:
        if client.transport is not None and client.transport.connected:
            client.transport.abortConnection()


@pytest_twisted.inlineCallbacks
def test_hostile_clients_are_closed_and_do_not_starve_a_good_one():
    server = yield startIssuer(
        reactor(), [Responder()], spec=ASCII, maxSessions=30, idleTimeout=1.5, frameTimeout=0.5
    )
    port = portOf(server)
    good, mux = startLink(reactor(), port, name="good", spec=ASCII)
    clients, dribble = [], []
    try:
        yield good.ready.whenState(True)
        silent = yield raw(port, clients)
        silent.transport.write(b"9999")  # a length prefix, then silence
        slow = yield raw(port, clients)
        frame = ASCII.encode({"t": "0200", "11": "000001", "41": "TERM0001"})
        dribble += [
            reactor().callLater(0.2 * i, slow.transport.write, frame[i : i + 1])
            for i in range(len(frame))
        ]  # one byte every 0.2 s
        garbage = yield raw(port, clients)
        garbage.transport.write(b"\xff\xfe garbage, not a length")
        idle = yield defer.gatherResults(
            [raw(port, clients) for _ in range(40)]
        )  # past maxSessions
        outcomes = yield runLoad(mux, 3000, 8, timeout=5)
        failed = [o for o in outcomes if not (isinstance(o, dict) and o["39"] == "00")]
        assert failed == [], failed[:3]
        assert (yield garbage.closed) < 0.5
        assert 0.5 <= (yield silent.closed) < 2.0
        assert 0.5 <= (yield slow.closed) < 2.0
        lifetimes = yield defer.gatherResults([c.closed for c in idle])
        refused = [t for t in lifetimes if t < 0.5]
        assert len(refused) >= 40 - 26  # beyond maxSessions: closed at once
        assert all(1.4 <= t < 3.5 for t in lifetimes if t >= 0.5), lifetimes  # idle timeout 1.5 s
        assert server.counters["refused"] >= len(refused)
        response = yield mux.request({"t": "0200", "11": "999999", "41": "TERM0001"}, 5)
        assert response["39"] == "00" and good.ready  # never closed: it is not idle
    finally:
        for call in dribble:
            if call.active():
                call.cancel()
        closeAll(clients)
        yield mux.stopService()
        yield good.stopService()
        yield server.stopService()


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_client_that_never_reads_costs_bounded_memory(tmp_path):
    """
    Issue 9: 300,000 requests from a client that never read its answers grew
    the switch from 51 MB to 101 MB.
    """
    issuerDir, switchDir, frontPort = singleIssuerSwitch(tmp_path)
    issuerProc = Twistd(issuerDir, tmp_path)
    switch = Twistd(switchDir, tmp_path)
    hog = None
    try:
        issuerProc.waitFor("listening")
        switch.waitFor("front: listening")
        switch.waitFor("channel-1: connected")
        warm = tool(
            "load",
            "--endpoint",
            f"tcp:127.0.0.1:{frontPort}",
            "-n",
            "2000",
            "-c",
            "16",
            "--quiet",
            "--json",
        )
        assert warm.returncode == 0, warm.stdout + warm.stderr
        before = rss(switch.process.pid)
        hog = socket.create_connection(("127.0.0.1", frontPort))
        hog.setblocking(False)
        wire = b"".join(
            ASCII.encode(
                {
                    "t": "0200",
                    "11": "%06d" % i,
                    "41": "HOG%05d" % (i // 1000000),
                    "4": "000000001000",
                }
            )
            for i in range(1000)
        )
        sent, blocked = 0, 0.0
        while sent < 300 and blocked < 1.0:  # 300,000 requests, or it stops taking them
            started = time.monotonic()
            _, writable, _ = select.select([], [hog], [], 0.25)
            if not writable:
                blocked += time.monotonic() - started
                continue
            try:
                hog.send(wire)
            except BlockingIOError:
                continue
            sent += 1
        assert blocked >= 1.0, "the switch kept reading a client that does not read"
        during = rss(switch.process.pid)
        print(
            f"switch RSS {before / 1e6:.1f} MB -> {during / 1e6:.1f} MB after {sent * 1000} requests sent unread"
        )
        good = tool(
            "load",
            "--endpoint",
            f"tcp:127.0.0.1:{frontPort}",
            "-n",
            "2000",
            "-c",
            "16",
            "--quiet",
            "--json",
        )
        summary = json.loads(good.stdout)
        assert summary["answered"] == {"00": 2000}, summary
        assert during - before < 20 * 1024 * 1024, (before, during)
    finally:
        if hog is not None:
            hog.close()
        codes = [switch.stop(), issuerProc.stop()]
    assert codes == [0, 0]
    assert "Traceback" not in switch.log
