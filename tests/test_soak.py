"""
Long runs, excluded by default: ``python -m pytest -m soak``.

Each is bounded: MUXPOOL_SOAK_SECONDS (default 60) of churn, or a fixed
number of fuzzing examples.
"""

import os
import time

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.python.failure import Failure

from muxpool.app import runLoad
from muxpool.channel import ChannelSpec
from muxpool.errors import NotSent, OutcomeUnknown
from muxpool.iso import FRAMINGS
from muxpool.listeners import Responder
from muxpool.mux import MUXPool, strategyByName
from muxpool.testing import startIssuer, startLink
from tests.helpers import connectedProtocol

SECONDS = float(os.environ.get("MUXPOOL_SOAK_SECONDS", "60"))

pytestmark = pytest.mark.soak


@settings(max_examples=20000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(sorted(FRAMINGS)),
    st.sampled_from(["ISO87A", "ISO87B"]),
    st.lists(st.binary(max_size=512), max_size=16),
)
def test_fuzz_channels_long(channel, packager, chunks):
    protocol, transport, owner = connectedProtocol(ChannelSpec.fromConfig(channel, packager))
    for chunk in chunks:
        protocol.dataReceived(chunk)


@pytest_twisted.inlineCallbacks
def test_pool_churn():
    """
    Two backends; one is stopped and restarted over and over while traffic
    flows.  Every request ends with exactly one outcome, and only requests
    in flight on a stopped link are ever "outcome unknown".
    """
    from twisted.internet import reactor

    servers = []
    links = []
    for tag in "AB":
        server = yield startIssuer(reactor, listeners=[Responder(fixed={"44": tag})], gracePeriod=0)
        servers.append(server)
        links.append(startLink(reactor, server.port.getHost().port, name=f"soak-{tag}"))
    ports = [s.port.getHost().port for s in servers]
    pool = MUXPool("soak", [m for _, m in links], reactor, strategyByName("round-robin"))
    pool.startService()
    for adaptor, _ in links:
        yield adaptor.ready.whenState(True)
    deadline = time.monotonic() + SECONDS
    totals = {"answered": 0, "not_sent": 0, "unknown": 0}
    rounds = 0
    try:
        while time.monotonic() < deadline:
            rounds += 1
            victim = rounds % 2
            stopping = []

            def onEach(i, result):
                if i == 500 and not stopping:
                    stopping.append(servers[victim].stopService())

            outcomes = yield runLoad(pool, 2000, 32, timeout=5, start=rounds * 10000, onEach=onEach)
            yield stopping[0]
            for o in outcomes:
                assert o is not None
                if isinstance(o, dict):
                    totals["answered"] += 1
                elif isinstance(o, Failure) and o.check(OutcomeUnknown):
                    totals["unknown"] += 1
                else:
                    assert isinstance(o, Failure) and o.check(NotSent)
                    totals["not_sent"] += 1
            servers[victim] = yield startIssuer(
                reactor,
                listeners=[Responder(fixed={"44": "AB"[victim]})],
                port=ports[victim],
                gracePeriod=0,
            )
            yield links[victim][0].ready.whenState(True)
        assert totals["answered"] > 0 and totals["unknown"] <= 32 * rounds
        assert pool.pendingCount() == 0
    finally:
        for adaptor, _ in links:
            yield adaptor.stopService()
        for server in servers:
            if server.running:
                yield server.stopService()
