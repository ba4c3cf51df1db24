"""
The pool's strategies beyond jPOS over real sockets on 127.0.0.1: an
issuer answering in 100 ms beside one answering at once.
"""

import pytest_twisted

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.link import ChannelAdaptor, QServer, ServerSettings
from muxpool.listeners import Responder
from muxpool.mux import QMUX, MUXPool, percentile, strategyByName

SPEC = ChannelSpec.fromConfig("NACChannel", "ISO87B")


def reactor():
    from twisted.internet import reactor

    return reactor


@pytest_twisted.inlineCallbacks
def test_least_latency_prefers_the_fast_issuer_and_beats_round_robin():
    r = reactor()
    started = []

    def start(service):
        service.startService()
        started.append(service)
        return service

    try:
        muxes = []
        for name, delay in (("slow", 0.1), ("fast", 0.0)):
            issuer = start(
                QServer(
                    name,
                    SPEC,
                    "tcp:0:interface=127.0.0.1",
                    r,
                    ServerSettings(gracePeriod=0),
                    listeners=[Responder(fixed={"44": name}, delay=delay)],
                )
            )
            port = (yield issuer.whenListening()).getHost().port
            adaptor = start(ChannelAdaptor(f"link-{name}", SPEC, f"tcp:127.0.0.1:{port}", r))
            muxes.append(start(QMUX(f"mux-{name}", adaptor, r)))
            yield adaptor.ready.whenState(True)
        figures = {}
        for strategy in ("least-latency", "round-robin"):
            pool = start(MUXPool(strategy, muxes, r, strategyByName(strategy, {"seed": "1"})))
            latencies = []
            outcomes = yield runLoad(pool, 400, 16, timeout=5, latencies=latencies)
            assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes)
            fast = sum(o["44"] == "fast" for o in outcomes) / len(outcomes)
            figures[strategy] = (fast, percentile(sorted(latencies), 99))
    finally:
        for service in reversed(started):
            yield service.stopService()
    share, p99 = figures["least-latency"]
    assert share >= 0.8 and p99 < figures["round-robin"][1], figures
    print({k: f"{s:.0%} to the fast one, p99 {p * 1000:.1f} ms" for k, (s, p) in figures.items()})
