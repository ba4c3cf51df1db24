"""
The pool's strategies beyond jPOS over real sockets on 127.0.0.1: an
issuer answering in 100 ms beside one answering at once.
"""

import pytest_twisted

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.listeners import Responder
from muxpool.mux import MUXPool, strategyByName
from tests.helpers import Started

SPEC = ChannelSpec.fromConfig("NACChannel", "ISO87B")


def reactor():
    from twisted.internet import reactor

    return reactor


@pytest_twisted.inlineCallbacks
def test_least_latency_prefers_the_fast_issuer_and_beats_round_robin():
    r = reactor()
    started = Started(r, SPEC)
    try:
        muxes = []
        for name, delay in (("slow", 0.1), ("fast", 0.0)):
            server = yield started.server(name, Responder(fixed={"44": name}, delay=delay))
            _, mux = yield started.link(name, server)
            muxes.append(mux)
        figures = {}
        # warm (PyPy's JIT), then each strategy in turn on the same members
        warm = started(MUXPool("warm", muxes, r, strategyByName("round-robin")))
        yield runLoad(warm, 400, 16, timeout=5)
        for strategy in ("least-latency", "round-robin"):
            pool = started(MUXPool(strategy, muxes, r, strategyByName(strategy, {"seed": "1"})))
            latencies = []
            outcomes = yield runLoad(pool, 400, 16, timeout=5, latencies=latencies)
            assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes)
            fast = sum(o["44"] == "fast" for o in outcomes) / len(outcomes)
            # the mean: a p99 is the slow issuer's for both while least-latency
            # still samples it (a few requests in a hundred)
            figures[strategy] = (fast, sum(latencies) / len(latencies))
    finally:
        yield started.stop()
    share, mean = figures["least-latency"]
    assert share >= 0.8 and mean < figures["round-robin"][1] / 2, figures
    print({k: f"{s:.0%} to the fast one, mean {m * 1000:.1f} ms" for k, (s, m) in figures.items()})


@pytest_twisted.inlineCallbacks
def test_an_issuer_answering_96_is_ejected_and_panic_still_spreads():
    """
    Over real sockets: beside a healthy issuer, one answering 96 to every
    request gets at most consecutive-codes (3) plus what was in flight
    before it is ejected, then none while it is out; with both answering
    96, one is ejected (50% at most) and, the other going down, the pool
    panics and still spreads the traffic.
    """
    from muxpool.mux import Ejection

    r = reactor()
    started = Started(r, SPEC)
    try:
        muxes, adaptors = [], []
        for name, code in (("failing", "96"), ("healthy", "00")):
            server = yield started.server(name, Responder(resultCode=code, fixed={"44": name}))
            adaptor, mux = yield started.link(name, server)
            adaptors.append(adaptor)
            muxes.append(mux)
        rules = Ejection(consecutiveCodes=3, outlierCodes=frozenset({"96"}), ejectionTime=60)
        pool = started(MUXPool("pool", muxes, r, strategyByName("round-robin"), ejection=rules))
        outcomes = yield runLoad(pool, 400, 4, timeout=5)
        toFailing = pool.counters["requests"]["failing-mux"]
        assert pool.isEjected(muxes[0]) and pool.counters["ejections"] == 1
        assert toFailing <= 3 + 4, toFailing  # 3 in a row, plus what was in flight
        codes = [o["39"] for o in outcomes]
        assert codes.count("96") == toFailing and codes.count("00") == 400 - toFailing
        # the healthy one goes down too: panic, and the ejected one is used
        yield adaptors[1].stopService()
        assert pool.ejector.panicking and pool.counters["panics"] == 1
        more = yield runLoad(pool, 20, 2, timeout=5, start=1000)
        assert [o["39"] for o in more] == ["96"] * 20  # sent, not refused as unusable
    finally:
        yield started.stop()
    print(f"the 96 issuer got {toFailing} of 400 before it was ejected")
