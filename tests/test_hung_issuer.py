"""
A hung issuer, for real: an issuer process stopped with SIGSTOP, whose
kernel still accepts TCP connections (so the link looks up), in a pool with
a healthy one.  The pool takes it out of rotation after a few timeouts, its
echo finds the peer dead, and it comes back once it answers again.
"""

import os
import signal
from collections import Counter

import pytest_twisted
from zope.interface import implementer

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.errors import LinkLost, RequestTimeout
from muxpool.interfaces import IRequestListener
from muxpool.link import AdaptorSettings, ChannelAdaptor
from muxpool.listeners import Forward, Responder
from muxpool.mux import QMUX, MUXPool, strategyByName
from tests.deployfiles import freePort, issuer
from tests.helpers import Started
from tests.twistdproc import Twistd

ISO87B = ChannelSpec.fromConfig("NACChannel", "ISO87B")


def reactor():
    from twisted.internet import reactor

    return reactor


def issuerProcess(tmp_path, name):
    deploy = tmp_path / name
    deploy.mkdir()
    port = freePort()
    (deploy / "10_issuer.xml").write_text(issuer(name, port, name))
    proc = Twistd(deploy, tmp_path)
    try:
        proc.waitFor(f"{name}: listening")
    except BaseException:
        proc.stop()
        raise
    return proc, port


@pytest_twisted.inlineCallbacks
def test_a_hung_issuer_is_taken_out_of_rotation_and_comes_back(tmp_path):
    r = reactor()
    healthy, healthyPort = issuerProcess(tmp_path, "issuer-a")
    try:
        hung, hungPort = issuerProcess(tmp_path, "issuer-b")
    except BaseException:
        healthy.stop()
        raise
    adaptors, muxes = [], []
    for name, port in (("a", healthyPort), ("b", hungPort)):
        adaptor = ChannelAdaptor(
            f"link-{name}",
            ISO87B,
            f"tcp:127.0.0.1:{port}",
            r,
            AdaptorSettings(
                reconnectDelay=0.2, maxReconnectDelay=2.0, echoInterval=0.5, echoTimeout=0.5
            ),
        )
        mux = QMUX(f"mux-{name}", adaptor, r)
        adaptor.startService()
        mux.startService()
        adaptors.append(adaptor)
        muxes.append(mux)
    pool = MUXPool("pool", muxes, r, strategyByName("round-robin"), suspendAfterTimeouts=2)
    pool.startService()
    try:
        for adaptor in adaptors:
            yield adaptor.ready.whenState(True)
        before = yield runLoad(pool, 20, 2, timeout=2)
        assert sorted(o["44"] for o in before) == ["issuer-a"] * 10 + ["issuer-b"] * 10

        os.kill(hung.process.pid, signal.SIGSTOP)
        during = yield runLoad(pool, 200, 4, timeout=0.5, start=1000)
        failed = [o for o in during if not isinstance(o, dict)]
        # the two timeouts that suspend it, plus what was in flight to it then
        assert 2 <= len(failed) <= 6, len(failed)
        # each an outcome unknown: a timeout, or the link its failed echo
        # dropped just as the request's own deadline came
        assert all(o.check(RequestTimeout, LinkLost) for o in failed), failed
        assert pool.isSuspended(muxes[1]) and pool.counters["ejections"] == 1
        sentToHung = pool.counters["requests"]["mux-b"]
        assert sentToHung <= 10 + 6
        # the dead peer is detected by its echo (the pool asked for one); the
        # connection is dropped and reconnects back off
        yield adaptors[1].ready.whenState(False)
        assert adaptors[1].counters["echo_failures"] == 1
        assert "echo not answered" in adaptors[1].lastFailure
        assert pool.counters["requests"]["mux-b"] == sentToHung

        os.kill(hung.process.pid, signal.SIGCONT)
        yield adaptors[1].probe()  # fires when the peer answers an echo again
        assert not pool.isSuspended(muxes[1])
        yield adaptors[1].ready.whenState(True)
        after = yield runLoad(pool, 20, 2, timeout=2, start=5000)
        assert all(isinstance(o, dict) for o in after)
        assert pool.counters["requests"]["mux-b"] > sentToHung
    finally:
        if hung.process.poll() is None:
            os.kill(hung.process.pid, signal.SIGCONT)
        yield pool.stopService()
        for mux, adaptor in zip(muxes, adaptors):
            yield mux.stopService()
            yield adaptor.stopService()
        assert [healthy.stop(), hung.stop()] == [0, 0]


@implementer(IRequestListener)
class Swallow:
    """
    An issuer that takes every request and never answers.
    """

    def process(self, source, message):
        return True


@pytest_twisted.inlineCallbacks
def test_an_issuer_that_never_answers_cannot_hold_a_clients_whole_in_flight_limit():
    """
    One client, a front session limited to 16 requests in flight, a pool
    of two issuers of which one never answers, suspension off (jPOS's
    default): the dead issuer holds at most the pool's max-unanswered (4)
    of the session's 16, so the client's requests to the healthy issuer go
    on being answered at once, not after the dead one's timeouts.
    """
    started = Started(reactor(), ChannelSpec.fromConfig("NACChannel", "ISO87B"))
    try:
        muxes = []
        for name, listener in (
            ("healthy", Responder(fixed={"44": "healthy"})),
            ("dead", Swallow()),
        ):
            _, mux = yield started.link(name, (yield started.server(name, listener)))
            muxes.append(mux)
        pool = started(
            MUXPool("pool", muxes, reactor(), strategyByName("round-robin"), maxUnanswered=4)
        )
        front = yield started.server("front", Forward(pool, timeout=2), maxInFlight=16)
        _, clientMux = yield started.link("client", front)
        latencies = []
        outcomes = yield runLoad(clientMux, 400, 16, timeout=10, latencies=latencies)
    finally:
        yield started.stop()
    answered = [o for o in outcomes if isinstance(o, dict) and o["39"] == "00"]
    declined = [o for o in outcomes if isinstance(o, dict) and o["39"] != "00"]
    # The dead issuer holds a few requests at a time (declined 68 at each 2 s
    # timeout), never the session's whole limit: the healthy one answers
    # the rest at once, none waiting for those timeouts.  (Without the
    # limit it is sent half of them, 16 held at a time: 200, over 26 s.)
    dead = pool.counters["requests"]["dead-mux"]
    assert dead <= 40 and len(declined) == dead, (dead, len(declined))
    assert len(answered) == 400 - dead, outcomes
    fastest = sorted(latencies)[: len(answered)]  # the declines took 2 s each
    assert fastest[int(len(fastest) * 0.99)] < 1.0


@pytest_twisted.inlineCallbacks
def test_a_full_member_sheds_at_once_and_the_other_takes_the_rest():
    """
    A silent issuer behind a QMUX with max-in-flight 8, over real sockets:
    through a pool with a healthy member, it holds 8 and the healthy one
    takes the rest; alone, every request beyond its 8 is declined 91 at
    once (in milliseconds), none waiting for its timeout.
    """
    r = reactor()
    started = Started(r, ChannelSpec.fromConfig("NACChannel", "ISO87B"))
    try:
        muxes = {}
        for name, listener, limit in (
            ("silent", Swallow(), 8),
            ("healthy", Responder(fixed={"44": "healthy"}), None),
        ):
            server = yield started.server(name, listener)
            _, muxes[name] = yield started.link(name, server, maxInFlight=limit)
        both = started(
            MUXPool("both", [muxes["silent"], muxes["healthy"]], r, strategyByName("round-robin"))
        )
        alone = started(MUXPool("alone", [muxes["silent"]], r))
        clients = {}
        for pool in (both, alone):
            front = yield started.server(
                f"front-{pool.name}", Forward(pool, timeout=2), maxInFlight=64
            )
            _, clients[pool.name] = yield started.link(f"c-{pool.name}", front)
        shared = yield runLoad(clients["both"], 200, 16, timeout=5)
        latencies = []
        shed = yield runLoad(clients["alone"], 100, 16, timeout=5, latencies=latencies, start=1000)
    finally:
        yield started.stop()
    # with the healthy member: the silent one holds its 8 (declined 68 at
    # the 2 s timeout), the healthy one answers every other request
    codes = Counter(o["39"] for o in shared)
    assert codes == {"00": 192, "68": 8}, codes
    assert {o["44"] for o in shared if o["39"] == "00"} == {"healthy"}
    # alone, it takes 8 (68 at the timeout); every request beyond them is
    # declined 91 at once, none waiting for a timeout
    codes = Counter(o["39"] for o in shed)
    assert codes == {"91": 92, "68": 8}, codes
    # at once: far below the 2 s timeout (under 0.1 s when the machine is idle)
    fastest = sorted(latencies)[:92]
    assert max(fastest) < 0.5, fastest[-5:]
    print(f"declined 91 in at most {max(fastest) * 1000:.1f} ms")
    assert both.counters["shed"] == 0 and alone.counters["shed"] == 92
