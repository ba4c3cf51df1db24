"""
A pool of two ChannelAdaptor + QMUX members against two QServer +
Responder backends, on real loopback sockets.
"""

from collections import Counter

import pytest_twisted
from twisted.internet import defer
from twisted.python.failure import Failure

from muxpool.app import runLoad
from muxpool.errors import NotSent, OutcomeUnknown
from muxpool.listeners import Responder
from muxpool.mux import MUXPool, strategyByName
from muxpool.testing import portOf, startIssuer, startLink


def reactor():
    from twisted.internet import reactor

    return reactor


@defer.inlineCallbacks
def twoBackends(r, strategy="round-robin"):
    servers, adaptors, muxes = [], [], []
    for tag in "AB":
        server = yield startIssuer(
            r, listeners=[Responder(fixed={"44": tag})], name=f"issuer-{tag}", gracePeriod=0
        )
        adaptor, mux = startLink(r, portOf(server), name=f"link-{tag}")
        servers.append(server)
        adaptors.append(adaptor)
        muxes.append(mux)
    pool = MUXPool("pool", muxes, r, strategyByName(strategy))
    pool.startService()
    for adaptor in adaptors:
        yield adaptor.ready.whenState(True)
    return servers, adaptors, muxes, pool


@defer.inlineCallbacks
def shutdown(servers, adaptors):
    for adaptor in adaptors:
        yield adaptor.stopService()
    for server in servers:
        if server.running:
            yield server.stopService()


def split(outcomes):
    return Counter(o["44"] for o in outcomes if isinstance(o, dict))


@pytest_twisted.inlineCallbacks
def test_round_robin_splits_evenly():
    r = reactor()
    servers, adaptors, muxes, pool = yield twoBackends(r)
    try:
        outcomes = yield runLoad(pool, 10000, 100)
        assert split(outcomes) == {"A": 5000, "B": 5000}
        assert pool.counters["requests"] == {"link-A-mux": 5000, "link-B-mux": 5000}
        assert pool.counters["no_mux"] == 0 and pool.pendingCount() == 0
    finally:
        yield shutdown(servers, adaptors)


@pytest_twisted.inlineCallbacks
def test_backend_lost_mid_stream_and_back():
    r = reactor()
    servers, adaptors, muxes, pool = yield twoBackends(r)
    portA = portOf(servers[0])
    try:
        stopping = []

        def onEach(i, result):
            if i == 1000 and not stopping:
                stopping.append(servers[0].stopService())

        outcomes = yield runLoad(pool, 4000, 50, timeout=5, onEach=onEach)
        yield stopping[0]
        assert all(o is not None for o in outcomes)
        failures = [o for o in outcomes if isinstance(o, Failure)]
        for f in failures:
            # only what was in flight on the stopped link may be unknown
            assert f.check(OutcomeUnknown, NotSent)
        assert len(failures) <= 50
        tail = outcomes[1200:]
        assert split(tail) == {"B": len(tail)}

        restarted = yield startIssuer(
            r, listeners=[Responder(fixed={"44": "A"})], port=portA, name="issuer-A2"
        )
        servers.append(restarted)
        yield adaptors[0].ready.whenState(True)
        outcomes = yield runLoad(pool, 1000, 20, start=10000)
        assert split(outcomes) == {"A": 500, "B": 500}
    finally:
        yield shutdown(servers, adaptors)


@pytest_twisted.inlineCallbacks
def test_disable_under_load_drains_without_failures():
    r = reactor()
    servers, adaptors, muxes, pool = yield twoBackends(r)
    try:

        def onEach(i, result):
            if i == 1000:
                pool.disable("link-A-mux")

        outcomes = yield runLoad(pool, 3000, 50, onEach=onEach)
        assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes)
        assert split(outcomes[1100:]) == {"B": 1900}
        assert muxes[0].pendingCount() == 0
    finally:
        yield shutdown(servers, adaptors)
