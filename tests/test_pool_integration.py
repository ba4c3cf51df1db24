"""
A pool of two ChannelAdaptor + QMUX members against two QServer +
Responder backends, joined in memory (L{tests.helpers.MemoryNetwork}).
"""

from collections import Counter

from twisted.python.failure import Failure

from muxpool.app import runLoad
from muxpool.errors import NotSent, OutcomeUnknown
from muxpool.listeners import Responder
from muxpool.mux import MUXPool, strategyByName
from muxpool.testing import startIssuer, startLink
from tests.helpers import MemoryNetwork

PORTS = {"A": 9001, "B": 9002}


def twoBackends(net, strategy="round-robin"):
    r = net.reactor
    servers, adaptors, muxes = [], [], []
    for tag, port in PORTS.items():
        server = net.wait(
            startIssuer(
                r,
                listeners=[Responder(fixed={"44": tag})],
                port=port,
                name=f"issuer-{tag}",
                gracePeriod=0,
            )
        )
        adaptor, mux = startLink(r, port, name=f"link-{tag}")
        servers.append(server)
        adaptors.append(adaptor)
        muxes.append(mux)
    # maxUnanswered off: the memory network delivers one side's answers in
    # batches, and a split this exact is what the strategy alone gives
    pool = MUXPool("pool", muxes, r, strategyByName(strategy), maxUnanswered=0)
    pool.startService()
    for adaptor in adaptors:
        net.wait(adaptor.ready.whenState(True))
    return servers, adaptors, muxes, pool


def split(outcomes):
    return Counter(o["44"] for o in outcomes if isinstance(o, dict))


def test_round_robin_splits_evenly():
    net = MemoryNetwork()
    servers, adaptors, muxes, pool = twoBackends(net)
    outcomes = net.wait(runLoad(pool, 10000, 100))
    assert split(outcomes) == {"A": 5000, "B": 5000}
    assert pool.counters["requests"] == {"link-A-mux": 5000, "link-B-mux": 5000}
    assert pool.counters["no_mux"] == 0 and pool.pendingCount() == 0


def test_backend_lost_mid_stream_and_back():
    net = MemoryNetwork()
    servers, adaptors, muxes, pool = twoBackends(net)
    stopping = []

    def onEach(i, result):
        if i == 1000 and not stopping:
            stopping.append(servers[0].stopService())

    outcomes = net.wait(runLoad(pool, 4000, 50, timeout=5, onEach=onEach))
    net.wait(stopping[0])
    assert all(o is not None for o in outcomes)
    failures = [o for o in outcomes if isinstance(o, Failure)]
    for f in failures:
        # only what was in flight on the stopped link may be unknown
        assert f.check(OutcomeUnknown, NotSent)
    assert len(failures) <= 50
    tail = outcomes[1200:]
    assert split(tail) == {"B": len(tail)}

    net.wait(
        startIssuer(
            net.reactor,
            listeners=[Responder(fixed={"44": "A"})],
            port=PORTS["A"],
            name="issuer-A2",
        )
    )
    net.wait(adaptors[0].ready.whenState(True))
    outcomes = net.wait(runLoad(pool, 1000, 20, start=10000))
    assert split(outcomes) == {"A": 500, "B": 500}


def test_disable_under_load_drains_without_failures():
    net = MemoryNetwork()
    servers, adaptors, muxes, pool = twoBackends(net)

    def onEach(i, result):
        if i == 1000:
            pool.disable("link-A-mux")

    outcomes = net.wait(runLoad(pool, 3000, 50, onEach=onEach))
    assert all(isinstance(o, dict) and o["39"] == "00" for o in outcomes)
    assert split(outcomes[1100:]) == {"B": 1900}
    assert muxes[0].pendingCount() == 0
