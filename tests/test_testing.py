"""
The public testing kit, muxpool.testing: the in-memory link and issuer, the
pool harness, the loopback helpers, and the README examples that use them.
"""

import re
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from muxpool.errors import EncodeFailed, LinkLost, LinkNotReady, NoMUXAvailable, RequestTimeout
from muxpool.interfaces import ILink, IProbe, ISource, IStrategy
from muxpool.iso import sampleRequest
from muxpool.listeners import Responder
from muxpool.mux import QMUX
from muxpool.testing import (
    MemoryIssuer,
    MemoryLink,
    PoolHarness,
    answer,
    attachmentsOf,
    outcomeOf,
    portOf,
    runUntil,
    startIssuer,
    startLink,
)
from tests.conftest import ROOT

REQUEST = {"t": "0200", "3": "000000", "4": "000000001000", "11": "000001", "41": "TERM0001"}


def issuerMUX():
    """
    A started QMUX on a MemoryLink with a MemoryIssuer behind it.
    """
    clock = Clock()
    link = MemoryLink("issuer-channel")
    issuer = MemoryIssuer(link, clock)
    mux = QMUX("issuer-mux", link, clock)
    mux.startService()
    return mux, link, issuer, clock


def request(mux, stan="000001", timeout=5, **fields):
    return mux.request(dict(REQUEST, **{"11": stan}, **fields), timeout)


# -- the in-memory link ------------------------------------------------------


def test_memory_link_provides_its_interfaces():
    link = MemoryLink()
    assert verifyObject(ILink, link) and verifyObject(ISource, link)
    assert verifyObject(IProbe, link)


def test_memory_link_records_refuses_and_loses():
    link = MemoryLink("l")
    lost = []
    link.addLossObserver(lost.append)
    link.send(REQUEST)
    assert link.sent == [REQUEST] and link.sent[0] is not REQUEST
    link.refuse = EncodeFailed("cannot pack field 4")
    with pytest.raises(EncodeFailed):
        link.send(REQUEST)
    link.refuse = None
    link.lose()
    assert not link.ready and not link.isConnected() and lost[0].check(ConnectionLost)
    with pytest.raises(LinkNotReady):
        link.send(REQUEST)
    assert len(link.sent) == 1
    link.connect()
    assert link.ready and link.deliver(answer(REQUEST)) is False  # no receiver


def test_a_probe_is_proven_by_the_answer_to_its_echo():
    link = MemoryLink("l", ready=False)
    proven = []
    link.probe().addCallback(proven.append)
    assert link.sent == []  # not ready: the echo waits for a connection
    link.connect()
    [echo] = link.sent
    assert echo["t"] == "0800" and echo["70"] == "301" and proven == []
    assert link.deliver(answer(echo))
    assert proven == [None]


# -- the in-memory issuer ------------------------------------------------------


def test_the_default_answer_is_the_responders():
    mux, link, issuer, clock = issuerMUX()
    response = outcomeOf(request(mux))
    assert response == Responder().response(REQUEST) == answer(REQUEST)
    assert response["39"] == "00" and response["t"] == "0210"
    assert issuer.requests == [REQUEST] and issuer.answers == [response]


def test_rules_answer_by_mti_field_and_predicate_newest_first():
    mux, link, issuer, clock = issuerMUX()
    issuer.when(mti="0200").answer("05")
    issuer.when(fields={"41": "TERM0002"}).answer("51", {"44": "B"})
    issuer.when(lambda m: m.get("4", "") > "000000050000").answer("61")
    assert outcomeOf(request(mux, "000001"))["39"] == "05"
    second = outcomeOf(request(mux, "000002", **{"41": "TERM0002"}))
    assert second["39"] == "51" and second["44"] == "B"
    assert outcomeOf(request(mux, "000003", **{"4": "000000090000"}))["39"] == "61"
    assert outcomeOf(mux.request({"t": "0800", "11": "000004", "70": "301"}, 5))["39"] == "00"
    assert [rule.matched for rule in issuer.rules] == [1, 1, 1]


def test_a_delayed_answer_comes_on_the_clock():
    mux, link, issuer, clock = issuerMUX()
    issuer.when().after(2.5).answer()
    d = request(mux)
    clock.advance(2.4)
    assert outcomeOf(d) is None and issuer.answers == []
    clock.advance(0.1)
    assert outcomeOf(d)["39"] == "00"


def test_never_answering_gives_a_timeout():
    mux, link, issuer, clock = issuerMUX()
    issuer.when().never()
    d = request(mux, timeout=5)
    clock.advance(5)
    assert isinstance(outcomeOf(d), RequestTimeout)
    assert outcomeOf(d) is outcomeOf(d)  # asked again: the same outcome
    assert len(issuer.requests) == 1 and issuer.answers == []


def test_dropping_the_connection_gives_link_lost():
    mux, link, issuer, clock = issuerMUX()
    issuer.when(mti="0200").times(1).drop()
    assert isinstance(outcomeOf(request(mux, "000001")), LinkLost)
    assert not link.ready and not mux.ready
    link.connect()
    assert outcomeOf(request(mux, "000002"))["39"] == "00"  # the rule is spent


def test_an_answer_for_a_lost_connection_is_not_delivered():
    mux, link, issuer, clock = issuerMUX()
    issuer.when().after(1).answer()
    first = request(mux, "000001")
    link.lose()
    link.connect()
    second = request(mux, "000002")
    clock.advance(1)
    assert isinstance(outcomeOf(first), LinkLost) and outcomeOf(second)["39"] == "00"
    assert [a["11"] for a in issuer.answers] == ["000002"]
    assert mux.counters["rx_unhandled"] == 0


def test_responses_written_to_the_issuer_are_recorded_not_answered():
    link = MemoryLink()
    issuer = MemoryIssuer(link)
    link.send(answer(REQUEST))
    assert issuer.responses == [answer(REQUEST)] and issuer.requests == []


def test_a_delay_needs_a_clock():
    with pytest.raises(ValueError):
        MemoryIssuer(MemoryLink()).when().after(1)


# -- the pool harness ------------------------------------------------------------


@implementer(IStrategy)
class LastUsable:
    name = "last-usable"

    def select(self, pool, message):
        for member in reversed(pool.members):
            if pool.isUsable(member):
                return member
        return None


def test_the_harness_runs_a_custom_strategy():
    harness = PoolHarness(("a", "b", "c"), LastUsable())
    assert verifyObject(IStrategy, harness.pool.strategy)
    assert outcomeOf(harness.request())["39"] == "00"
    harness.down("c")
    harness.down(harness.members[1], lose=False)
    assert outcomeOf(harness.request())["39"] == "00"
    assert [len(i.requests) for i in harness.issuers] == [1, 0, 1]
    harness.up("b-channel")
    harness.request(fields={"41": "TERM0009"})
    assert harness.issuers[1].requests[0]["41"] == "TERM0009"
    assert harness.stop().called
    assert all(attachmentsOf(link) == 0 for link in harness.links)


def test_the_harness_builds_a_named_strategy_with_its_settings():
    harness = PoolHarness(3, "split-by-divisor", config={"split-field": "4"})
    for amount in ("000000000004", "000000000005"):
        harness.request(fields={"4": amount})
    assert [len(i.requests) for i in harness.issuers] == [0, 1, 1]


def test_the_harness_check_enabled_and_a_reconnect():
    harness = PoolHarness(2, checkEnabled=True)
    d = harness.request(timeout=1)
    harness.advance(1)
    assert isinstance(outcomeOf(d), NoMUXAvailable)
    harness.pool.enable("m1")
    assert outcomeOf(harness.request())["39"] == "00"
    harness.down("m1")
    harness.up("m1")
    assert not harness.pool.ready  # a reconnect must be enabled again, as jPOS


def test_the_harness_suspends_a_hung_member_until_its_echo_is_answered():
    harness = PoolHarness(2, "round-robin", suspendAfterTimeouts=2)
    hung = harness.issuers[0].when().never()
    outcomes = [harness.request(timeout=1) for _ in range(4)]
    harness.advance(1)
    assert [type(outcomeOf(d)) for d in outcomes] == [RequestTimeout, dict] * 2
    assert harness.pool.isSuspended(harness.members[0])
    assert harness.issuers[0].requests[-1]["t"] == "0800"  # the probe, unanswered
    for _ in range(3):
        harness.request()
    assert len(harness.issuers[1].requests) == 5
    hung.times(0)  # the issuer answers again; the next echo proves it
    harness.links[0].echo()
    assert not harness.pool.isSuspended(harness.members[0])


def test_run_until_stops_at_each_call():
    clock = Clock()
    seen = []
    clock.callLater(1, lambda: seen.append(clock.seconds()))
    clock.callLater(2, lambda: seen.append(clock.seconds()))
    runUntil(clock, 5)
    assert seen == [1, 2] and clock.seconds() == 5


# -- on 127.0.0.1 ------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_a_loopback_issuer_and_link():
    from twisted.internet import reactor

    server = yield startIssuer(reactor, [Responder(fixed={"44": "A"})])
    link = startLink(reactor, portOf(server))
    adaptor, mux = link
    try:
        yield link.whenReady()
        response = yield mux.request(sampleRequest(1), 5)
        assert response["39"] == "00" and response["44"] == "A"
        assert server.counters["accepted"] == 1
    finally:
        yield link.stop()
        yield server.stopService()
    assert not adaptor.running and not mux.running and attachmentsOf(adaptor) == 0


# -- the kit's place -------------------------------------------------------------


def test_production_code_never_loads_the_kit():
    code = (
        "import sys, muxpool, muxpool.tap, muxpool.cli, muxpool.deploy; "
        "print([m for m in sys.modules if m.startswith('muxpool.testing')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def readmeExamples():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Testing your own strategy or listener", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.parametrize("index", [0, 1])
def test_the_readme_examples_run(index):
    namespace = {}
    exec(compile(readmeExamples()[index], f"README.md example {index + 1}", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0]()
