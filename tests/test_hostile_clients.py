"""
Hostile clients on a real port, each while a well-behaved client runs.  The
well-behaved client keeps being answered, and each hostile session is closed
within its timeout; one that never reads its answers costs the switch
bounded memory.
"""

import json
import platform
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
from tests.deployfiles import freePort, qmux, singleIssuerSwitch
from tests.twistdproc import Twistd, tool

ASCII = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")


def reactor():
    from twisted.internet import reactor

    return reactor


class Raw(protocol.Protocol):
    """
    A hostile client: writes what it is told; C{closed} fires with how
    long it lived, timed from before it connected.
    """

    def __init__(self):
        self.closed = defer.Deferred()
        # Before the connection exists: the server's session cannot start
        # (nor its timeouts begin) earlier, so a lifetime measured from here
        # is never shorter than the server-side timeout that ended it.
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


# The timeouts are far apart, so each close is told apart by when it comes
# with seconds to spare on a loaded machine.  Timers fire late, never early,
# and every lifetime is timed from before the client connected, so a lower
# bound equal to a configured timeout holds however slow the machine is:
#   - not a frame at all: closed at once; taken for an unfinished frame it
#     would wait for FRAME_TIMEOUT, so it must be closed in less;
#   - an unfinished frame (silent after a length prefix, or one byte every
#     DRIBBLE s): never before FRAME_TIMEOUT; closed before UNFINISHED_BY,
#     midway to the idle timeout, the first thing that could close the
#     silent one otherwise.  The slow one, were each byte to restart its
#     frame timer, would finish its frame (after 7.4 s: see the check
#     below), be answered, and stay until idle;
#   - beyond maxSessions: closed at once, in under half the idle timeout;
#   - idle: never before IDLE_TIMEOUT, and within twice that.
FRAME_TIMEOUT = 2.0
IDLE_TIMEOUT = 8.0
UNFINISHED_BY = (FRAME_TIMEOUT + IDLE_TIMEOUT) / 2
DRIBBLE = 0.2


@pytest_twisted.inlineCallbacks
def test_hostile_clients_are_closed_and_do_not_starve_a_good_one():
    server = yield startIssuer(
        reactor(),
        [Responder()],
        spec=ASCII,
        maxSessions=30,
        idleTimeout=IDLE_TIMEOUT,
        frameTimeout=FRAME_TIMEOUT,
    )
    port = portOf(server)
    # Its echoes keep the good client from being idle however long the test takes.
    good, mux = startLink(reactor(), port, name="good", spec=ASCII, echoInterval=IDLE_TIMEOUT / 4)
    clients, dribble = [], []
    try:
        yield good.ready.whenState(True)
        silent = yield raw(port, clients)
        silent.transport.write(b"9999")  # a length prefix, then silence
        slow = yield raw(port, clients)
        frame = ASCII.encode({"t": "0200", "11": "000001", "41": "TERM0001"})
        assert (len(frame) - 1) * DRIBBLE > UNFINISHED_BY  # what its bound rests on
        dribble += [
            reactor().callLater(DRIBBLE * i, slow.transport.write, frame[i : i + 1])
            for i in range(len(frame))
        ]
        garbage = yield raw(port, clients)
        garbage.transport.write(b"\xff\xfe garbage, not a length")
        idle = yield defer.gatherResults(
            [raw(port, clients) for _ in range(40)]
        )  # past maxSessions
        outcomes = yield runLoad(mux, 3000, 8, timeout=5)
        failed = [o for o in outcomes if not (isinstance(o, dict) and o["39"] == "00")]
        assert failed == [], failed[:3]
        assert (yield garbage.closed) < FRAME_TIMEOUT
        assert FRAME_TIMEOUT <= (yield silent.closed) < UNFINISHED_BY
        assert FRAME_TIMEOUT <= (yield slow.closed) < UNFINISHED_BY
        lifetimes = yield defer.gatherResults([c.closed for c in idle]).addTimeout(
            3 * IDLE_TIMEOUT, reactor()
        )
        refused = [t for t in lifetimes if t < IDLE_TIMEOUT / 2]
        assert len(refused) >= 40 - 26  # beyond maxSessions: closed at once
        assert all(
            IDLE_TIMEOUT <= t < 2 * IDLE_TIMEOUT for t in lifetimes if t >= IDLE_TIMEOUT / 2
        ), lifetimes
        assert server.counters["refused"] >= len(refused)
        response = yield mux.request({"t": "0200", "11": "999999", "41": "TERM0001"}, 5)
        assert response["39"] == "00" and good.ready  # never closed: it is not idle
        assert good.counters["connects"] == 1
    finally:
        for call in dribble:
            if call.active():
                call.cancel()
        closeAll(clients)
        yield mux.stopService()
        yield good.stopService()
        yield server.stopService()


def neverReads(port, requests):
    """
    A client that writes up to C{requests} requests and never reads:
    returns how many whole requests it wrote before the switch stopped
    taking them for a second (or it ran out), whether it stopped, and the
    open socket.
    """
    hog = socket.create_connection(("127.0.0.1", port))
    hog.setblocking(False)
    frames = [
        ASCII.encode({"t": "0200", "11": "%06d" % i, "41": "HOG00000", "4": "000000001000"})
        for i in range(1000)
    ]
    size = len(frames[0])
    assert all(len(f) == size for f in frames)
    wire = b"".join(frames)
    written, blocked = 0, 0.0
    while written < requests * size and blocked < 1.0:
        started = time.monotonic()
        _, writable, _ = select.select([], [hog], [], 0.25)
        if not writable:
            blocked += time.monotonic() - started
            continue
        try:
            written += hog.send(wire[written % len(wire) :])
        except BlockingIOError:
            continue
    return written // size, blocked >= 1.0, hog


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def loadJson(frontPort):
    """
    C{muxpool load} of 2,000 requests, 16 in flight, summarised as JSON.
    """
    return tool(
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


def test_a_client_that_never_reads_costs_bounded_memory(tmp_path):
    """
    A client that never reads its answers stops being read before it has
    sent 300,000 requests: the switch grows by tens of MB at most (not by
    the gigabytes that reading it all would cost), and other clients are
    still answered.
    """
    issuerDir, switchDir, frontPort = singleIssuerSwitch(tmp_path)
    issuerProc = Twistd(issuerDir, tmp_path)
    switch = Twistd(switchDir, tmp_path)
    hog = None
    try:
        issuerProc.waitFor("listening")
        switch.waitFor("front: listening")
        switch.waitFor("channel-1: connected")
        warm = loadJson(frontPort)
        assert warm.returncode == 0, warm.stdout + warm.stderr
        before = rss(switch.process.pid)
        written, stopped, hog = neverReads(frontPort, 300000)
        assert stopped, "the switch kept reading a client that does not read"
        during = rss(switch.process.pid)
        print(
            f"switch RSS {before / 1e6:.1f} MB -> {during / 1e6:.1f} MB after {written} requests sent unread"
        )
        good = loadJson(frontPort)
        summary = json.loads(good.stdout)
        assert summary["answered"] == {"00": 2000}, summary
        # Reading every unread request would cost about 10 KB each (1 GB and
        # more).  CPython grows a few MB; PyPy also compiles the request path
        # meanwhile (its JIT's code and a larger GC nursery: 13-23 MB here).
        limit = (40 if platform.python_implementation() == "PyPy" else 20) * 1024 * 1024
        assert during - before < limit, (before, during)
    finally:
        if hog is not None:
            hog.close()
        codes = [switch.stop(), issuerProc.stop()]
    assert codes == [0, 0]
    assert "Traceback" not in switch.log


@pytest_twisted.inlineCallbacks
def test_more_idle_connections_than_descriptors_undeploy_nothing(tmp_path):
    """
    A switch whose file descriptor limit is 256, with more idle
    connections than that at its front and at its admin API, keeps every bean
    deployed, its port open and its clients answered: a server takes at
    most its default share of the descriptors and the admin API its own,
    the deploy folder is still read, and the refused connections cost a
    few log lines, not one each.
    """
    issuerDir, switchDir, frontPort = singleIssuerSwitch(tmp_path)
    adminPort = freePort()
    issuerProc = Twistd(issuerDir, tmp_path)
    switch = Twistd(
        switchDir,
        tmp_path,
        args=("--admin", f"tcp:{adminPort}:interface=127.0.0.1"),
        fdLimit=256,
    )
    idle = []
    good = None
    try:
        issuerProc.waitFor("listening")
        switch.waitFor("front: listening")
        switch.waitFor("channel-1: connected")
        switch.waitFor("admin API on")
        good = startLink(reactor(), frontPort, "good", spec=ASCII)
        yield good.whenReady()
        for port in [frontPort] * 200 + [adminPort] * 200:
            idle.append(socket.create_connection(("127.0.0.1", port)))
        # The deploy folder is rescanned (every 0.2 s) while they are open.
        (switchDir / "99_more.xml").write_text(qmux("late-mux", "q-late"))
        switch.waitFor("deploying qmux late-mux")
        outcomes = yield runLoad(good.mux, 200, 8, timeout=5)
        assert [o["39"] for o in outcomes if isinstance(o, dict)] == ["00"] * 200, outcomes[:3]
    finally:
        for s in idle:
            s.close()
        if good is not None:
            yield good.stop()
    assert switch.stop() == 0
    log = "".join(switch.lines)
    assert "undeploying" not in log and "cannot read deploy folder" not in log
    refusals = [line for line in switch.lines if "refused" in line]
    assert 1 <= len(refusals) <= 10, refusals
    opened = [line for line in switch.lines if "session from" in line]
    assert len(opened) <= 10, len(opened)
