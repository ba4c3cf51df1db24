"""
MUXPool and its strategies with fake members and a fake clock.
"""

import math
import textwrap

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from muxpool import Readiness
from muxpool.errors import (
    CancelledAfterWrite,
    CancelledBeforeWrite,
    DuplicateKey,
    EncodeFailed,
    LinkLost,
    LinkNotReady,
    MissingKey,
    NoMUXAvailable,
    NotSent,
    OutcomeUnknown,
    StrategyFailed,
)
from muxpool.interfaces import IMUX, IPool, IProbe, IStrategy
from muxpool.mux import (
    BUILTIN,
    MEMBER_GRACE,
    QMUX,
    MUXPool,
    StrategyConfigError,
    strategyByName,
    strategyByPath,
)
from muxpool.testing import MemoryLink, PoolHarness, answer, observersOf, outcomeOf
from tests.helpers import started
from tests.logcapture import capturedText


@implementer(IMUX)
class Member:
    """
    A scripted member: answers at once unless told otherwise.
    """

    def __init__(self, name, ready=True, linkName=None):
        self.name = name
        self.ready = Readiness(ready)
        self.requests = []
        self.script = []
        self.pending = 0
        if linkName:
            self.link = MemoryLink(linkName)

    def request(self, message, timeout):
        self.requests.append((message, timeout))
        if self.script:
            return self.script.pop(0)
        return succeed({"t": "0210", "by": self.name})

    def send(self, message):
        self.requests.append((message, None))

    def isConnected(self):
        return bool(self.ready)

    def pendingCount(self):
        return self.pending


def outcome(d):
    results = []
    d.addBoth(results.append)
    return results


def members(n, **kw):
    return [Member(f"m{i}", **kw) for i in range(n)]


def picks(pool, n, message=None):
    return [pool.select(message or {"t": "0200"}).name for _ in range(n)]


def makePool(ms, strategy=None, config=None, **kw):
    return started(MUXPool("pool", ms, Clock(), strategyByName(strategy, config or {}), **kw))


def test_interfaces():
    pool = makePool(members(2))
    assert verifyObject(IMUX, pool) and verifyObject(IPool, pool)
    for name, cls in BUILTIN.items():
        assert verifyObject(IStrategy, cls({})), name


def test_a_strategy_sees_an_ipool_when_a_request_is_retried():
    @implementer(IStrategy)
    class Recording:
        name = "recording"

        def __init__(self):
            self.views = []

        def select(self, pool, message):
            self.views.append(pool)
            return next((m for m in pool.members if pool.isUsable(m)), None)

    ms = members(2)
    ms[0].script = [fail(LinkNotReady("m0: not connected"))]
    strategy = Recording()
    pool = started(MUXPool("pool", ms, Clock(), strategy))
    assert outcomeOf(pool.request({"t": "0200"}, 5))["by"] == "m1"
    assert len(strategy.views) == 2 and strategy.views[0] is pool
    assert all(verifyObject(IPool, view) for view in strategy.views)
    assert not strategy.views[1].isUsable(ms[0])  # tried already for this request


# -- strategies: exact sequences -------------------------------------------


def test_primary_secondary():
    ms = members(3)
    pool = makePool(ms)
    assert picks(pool, 3) == ["m0", "m0", "m0"]
    ms[0].ready.set(False)
    assert picks(pool, 2) == ["m1", "m1"]
    ms[0].ready.set(True)
    assert picks(pool, 1) == ["m0"]


def test_default_is_primary_secondary():
    assert strategyByName(None).name == "primary-secondary"


def test_round_robin_jpos_issue_36():
    """
    With m1 down, m2 must not get m1's turn as well as its own.
    """
    ms = members(3)
    pool = makePool(ms, "round-robin")
    assert picks(pool, 3) == ["m0", "m1", "m2"]
    ms[1].ready.set(False)
    assert picks(pool, 6) == ["m0", "m2", "m0", "m2", "m0", "m2"]
    ms[1].ready.set(True)
    assert picks(pool, 3) == ["m0", "m1", "m2"]


def test_round_robin_disabled_member_skipped():
    ms = members(4)
    pool = makePool(ms, "round-robin")
    pool.disable("m2")
    assert picks(pool, 6) == ["m0", "m1", "m3", "m0", "m1", "m3"]
    pool.enable("m2")
    assert picks(pool, 4) == ["m0", "m1", "m2", "m3"]


def test_round_robin_with_override():
    ms = [
        Member("a", linkName="link-a"),
        Member("b", linkName="link-b"),
        Member("c", linkName="link-c"),
    ]
    pool = makePool(
        ms,
        "round-robin-with-override",
        {"follower-override": "0220 0420", "original-channel-field": "113"},
    )
    follow = {"t": "0220", "113": "link-c"}
    assert picks(pool, 3, follow) == ["c", "c", "c"]
    assert picks(pool, 3, {"t": "0200", "113": "link-c"}) == ["a", "b", "c"]
    ms[2].ready.set(False)
    assert picks(pool, 2, follow) == ["a", "b"]
    assert picks(pool, 1, {"t": "0420", "113": "b"}) == ["b"]


def test_split_by_divisor_any_length():
    ms = members(3)
    pool = makePool(ms, "split-by-divisor", {"split-field": "2"})
    pan = "4761739001010119"
    assert picks(pool, 2, {"t": "0200", "2": pan}) == [f"m{int(pan) % 3}"] * 2
    assert picks(pool, 1, {"t": "0200", "2": "7"}) == ["m1"]
    huge = "9" * 40
    assert picks(pool, 1, {"t": "0200", "2": huge}) == [f"m{int(huge) % 3}"]
    ms[1].ready.set(False)
    assert picks(pool, 2, {"t": "0200", "2": "7"}) == ["m0", "m2"]
    assert picks(pool, 2, {"t": "0200", "2": "ABC"}) == ["m0", "m2"]


def test_least_pending():
    ms = members(3)
    pool = makePool(ms, "least-pending")
    ms[0].pending, ms[1].pending, ms[2].pending = 5, 2, 2
    assert picks(pool, 1) == ["m1"]
    ms[1].ready.set(False)
    assert picks(pool, 1) == ["m2"]


def test_weighted_round_robin_smooth():
    ms = members(3)
    pool = makePool(ms, "weighted-round-robin", {"weights": "m0:5 m1:1 m2:1"})
    assert picks(pool, 7) == ["m0", "m0", "m1", "m0", "m2", "m0", "m0"]
    ms[0].ready.set(False)
    assert sorted(picks(pool, 4)) == ["m1", "m1", "m2", "m2"]


def test_unknown_strategy_lists_names():
    with pytest.raises(StrategyConfigError) as info:
        strategyByName("round-robbin")
    for name in ("round-robin", "primary-secondary", "split-by-divisor"):
        assert name in str(info.value)


def test_strategy_handler_by_path_and_fallback(tmp_path, monkeypatch):
    (tmp_path / "myhandlers.py").write_text(
        textwrap.dedent("""
        from zope.interface import implementer
        from muxpool.interfaces import IStrategy

        @implementer(IStrategy)
        class LastForReversals:
            name = "last-for-reversals"
            def __init__(self, config):
                self.mti = config.get("mti", "0420")
            def select(self, pool, message):
                if message.get("t") == self.mti:
                    return pool.members[-1]
                return None

        class NotAStrategy:
            def __init__(self, config):
                pass
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    handler = strategyByPath("myhandlers.LastForReversals", {"mti": "0400"})
    ms = members(3)
    pool = started(MUXPool("pool", ms, Clock(), handler, fallback=strategyByName("round-robin")))
    assert picks(pool, 2, {"t": "0400"}) == ["m2", "m2"]
    assert picks(pool, 3, {"t": "0200"}) == ["m0", "m1", "m2"]
    with pytest.raises(StrategyConfigError, match="does not implement IStrategy"):
        strategyByPath("myhandlers.NotAStrategy")
    with pytest.raises(StrategyConfigError, match="cannot be loaded"):
        strategyByPath("myhandlers.Missing")


def test_strategy_plugin_found_by_name(tmp_path, monkeypatch):
    plugins = tmp_path / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "my_strategy_plugin.py").write_text(
        textwrap.dedent("""
        from twisted.plugin import IPlugin
        from zope.interface import implementer
        from muxpool.interfaces import IStrategy

        @implementer(IPlugin, IStrategy)
        class AlwaysLast:
            name = "always-last"
            def select(self, pool, message):
                return pool.members[-1]

        alwaysLast = AlwaysLast()
    """)
    )
    import twisted.plugins

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        twisted.plugins, "__path__", list(twisted.plugins.__path__) + [str(plugins)]
    )
    strategy = strategyByName("always-last")
    pool = started(MUXPool("pool", members(3), Clock(), strategy))
    assert picks(pool, 2) == ["m2", "m2"]
    with pytest.raises(StrategyConfigError, match="always-last"):
        strategyByName("nope")


# -- requests ----------------------------------------------------------------


def test_request_goes_to_member():
    ms = members(2)
    pool = makePool(ms, "round-robin")
    assert outcome(pool.request({"t": "0200"}, 5))[0]["by"] == "m0"
    assert outcome(pool.request({"t": "0200"}, 5))[0]["by"] == "m1"
    assert pool.counters["requests"] == {"m0": 1, "m1": 1}


def test_waits_for_member_that_comes_up():
    ms = members(2, ready=False)
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 10))
    pool.clock.advance(3)
    assert results == [] and not pool.isConnected()
    ms[1].ready.set(True)
    assert results[0]["by"] == "m1"
    assert ms[1].requests[0][1] == 7  # the wait came off the timeout
    assert pool.clock.getDelayedCalls() == []


def test_no_member_by_deadline():
    ms = members(2, ready=False)
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 10))
    pool.clock.advance(9.99)
    assert results == []
    pool.clock.advance(0.01)
    assert results[0].check(NoMUXAvailable) and results[0].check(NotSent)
    assert pool.counters["no_mux"] == 1


def test_not_sent_retries_next_member():
    ms = members(3)
    ms[0].script = [fail(LinkNotReady("m0 down"))]
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 5))
    assert results[0]["by"] == "m1"
    assert pool.counters["retries"] == 1


def test_link_not_ready_everywhere_waits_then_not_sent():
    ms = members(2)
    for m in ms:
        m.script = [fail(LinkNotReady("down"))]
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 5))
    assert results == []  # both tried: waits for a change until the deadline
    assert len(ms[0].requests) == len(ms[1].requests) == 1
    assert pool.counters["retries"] == 1  # one retry: there was one other member
    pool.clock.advance(5)
    assert results[0].check(NoMUXAvailable) and "down" in str(results[0].value)


@pytest.mark.parametrize(
    "error", [DuplicateKey("dup"), MissingKey("no key"), EncodeFailed("cannot pack field 4")]
)
def test_only_what_another_member_could_send_is_retried(error):
    """
    Only what another member could send is retried there: a duplicate key
    is not sent on a second link (that would defeat the duplicate guard),
    and a missing key or an encode error fails everywhere.
    """
    ms = members(2)
    ms[0].script = [fail(error)]
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 5))
    assert results[0].check(type(error)) and results[0].check(NotSent)
    assert ms[1].requests == [] and pool.counters["retries"] == 0


def test_outcome_unknown_never_retried():
    ms = members(2)
    ms[0].script = [fail(LinkLost("gone after write"))]
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 5))
    assert results[0].check(OutcomeUnknown)
    assert ms[1].requests == []


def test_check_enabled_starts_disabled():
    ms = members(2)
    pool = makePool(ms, checkEnabled=True)
    assert not pool.isConnected()
    results = outcome(pool.request({"t": "0200"}, 5))
    pool.enable("m1")
    assert results[0]["by"] == "m1"


def test_disable_drains_without_failing_in_flight():
    ms = members(2)
    slow = Deferred()
    ms[0].script = [slow]
    pool = makePool(ms, "round-robin")
    first = outcome(pool.request({"t": "0200"}, 5))
    pool.disable("m0")
    assert picks(pool, 3) == ["m1", "m1", "m1"]
    slow.callback({"t": "0210", "by": "m0"})
    assert first[0]["by"] == "m0"


def test_nested_pools():
    inner1 = makePool(members(2), "round-robin")
    inner2 = started(MUXPool("inner2", [Member("x")], Clock()))
    outer = started(MUXPool("outer", [inner1, inner2], Clock(), strategyByName("round-robin")))
    got = [outcome(outer.request({"t": "0200"}, 5))[0]["by"] for _ in range(4)]
    assert got == ["m0", "x", "m1", "x"]
    inner2.members[0].ready.set(False)
    assert not inner2.ready
    assert outcome(outer.request({"t": "0200"}, 5))[0]["by"] == "m0"


def test_pool_of_qmuxes_fails_over_on_link_loss():
    harness = PoolHarness(2, "round-robin")
    harness.issuers[0].when().never()
    first = harness.request()
    harness.down(0)
    assert isinstance(outcomeOf(first), LinkLost)
    assert outcomeOf(harness.request())["39"] == "00"
    assert [len(issuer.requests) for issuer in harness.issuers] == [1, 1]


def test_cancel_request_while_waiting():
    ms = members(1, ready=False)
    pool = makePool(ms)
    d = pool.request({"t": "0200"}, 5)
    d.addErrback(lambda f: None)
    d.cancel()
    assert pool.pendingCount() == 0 and pool.clock.getDelayedCalls() == []


def test_send_without_waiting():
    ms = members(2, ready=False)
    pool = makePool(ms)
    with pytest.raises(NoMUXAvailable):
        pool.send({"t": "0800"})
    ms[1].ready.set(True)
    pool.send({"t": "0800"})
    assert ms[1].requests == [({"t": "0800"}, None)]


def test_member_that_raises_still_gives_one_outcome():
    ms = members(2)

    def boom(message, timeout):
        raise RuntimeError("bug in a custom member")

    ms[0].request = boom
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 5))
    # it was asked to send: the issuer may have it, so it is never resent
    assert len(results) == 1 and results[0].check(OutcomeUnknown)
    assert "RuntimeError" in str(results[0].value) and ms[1].requests == []
    assert pool.pendingCount() == 0 and pool.clock.getDelayedCalls() == []


# -- user code, deadlines, cancelling, suspension ------------------------------


@implementer(IStrategy)
class Raising:
    name = "raising"

    def select(self, pool, message):
        raise KeyError(message.get("2"))


def test_a_strategy_that_raises_is_not_sent_never_a_hang():
    """
    A strategy that raises gives the request an outcome at once ("not
    sent": StrategyFailed, naming the strategy, with no card data); nothing
    stays in flight and nothing raises out of request().
    """
    pool = started(MUXPool("pool", members(2), Clock(), Raising()))
    with capturedText() as lines:
        results = outcome(pool.request({"t": "0200", "2": "4761739001010119"}, 5))
    assert results[0].check(StrategyFailed) and results[0].check(NotSent)
    text = "\n".join(lines) + str(results[0].value)
    assert "test_pool.Raising" in text and "test_pool.py" in text and "KeyError" in text
    assert "4761739001010119" not in text
    assert pool.pendingCount() == 0 and pool.clock.getDelayedCalls() == []
    with pytest.raises(StrategyFailed):
        pool.send({"t": "0200"})


def test_a_strategy_that_raises_while_waiting_ends_the_wait():
    ms = members(1, ready=False)
    strategy = strategyByName("round-robin")
    pool = started(MUXPool("pool", ms, Clock(), strategy))
    results = outcome(pool.request({"t": "0200"}, 5))
    strategy.select = Raising().select
    ms[0].ready.set(True)
    assert results[0].check(StrategyFailed) and pool.pendingCount() == 0


def test_the_pool_never_sends_after_its_deadline():
    """
    A member that becomes ready in the deadline's reactor turn is not
    handed the request: it has no time left.
    """
    ms = members(1, ready=False)
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 5))
    pool.clock.rightNow = 5.0  # the deadline's turn: its timer not yet run
    ms[0].ready.set(True)
    assert ms[0].requests == []
    assert results[0].check(NoMUXAvailable)


def test_cancelling_a_pool_request_gives_the_members_outcome():
    """
    Cancelling gives an outcome, never CancelledError.
    """
    clock = Clock()
    link = MemoryLink("a")
    mux = started(QMUX("mux-a", link, clock))
    pool = started(MUXPool("pool", [mux], clock))
    d = pool.request({"t": "0200", "11": "000001", "41": "T1"}, 5)
    results = outcome(d)
    d.cancel()
    assert results[0].check(CancelledAfterWrite) and results[0].check(OutcomeUnknown)
    waiting = started(MUXPool("idle", members(1, ready=False), clock))
    d = waiting.request({"t": "0200"}, 5)
    results = outcome(d)
    d.cancel()
    assert results[0].check(CancelledBeforeWrite) and results[0].check(NotSent)
    assert waiting.pendingCount() == pool.pendingCount() == 0


def test_cancelling_while_a_member_waits_on_its_own_chain_cancels_what_it_wrote():
    """
    A member whose Deferred has fired but waits on one it chained (it
    waits for readiness, then asks a QMUX) counts as asked: cancelling
    cancels what it wrote, an outcome unknown, never "not sent".
    """
    clock = Clock()
    link = MemoryLink("a")
    mux = started(QMUX("mux-a", link, clock))
    member = Member("wrapper")
    member.script = [
        succeed(None).addCallback(
            lambda _: mux.request({"t": "0200", "11": "000001", "41": "T1"}, 5)
        )
    ]
    pool = makePool([member])
    d = pool.request({"t": "0200", "11": "000001", "41": "T1"}, 5)
    results = outcome(d)
    assert len(link.sent) == 1 and results == []
    d.cancel()
    assert results[0].check(CancelledAfterWrite) and results[0].check(OutcomeUnknown)
    assert mux.pendingCount() == 0 and pool.pendingCount() == 0


def test_a_member_answering_something_not_a_message_is_an_outcome_unknown():
    ms = members(2)
    ms[0].script = [succeed(None)]
    pool = makePool(ms)
    with capturedText() as lines:
        results = outcome(pool.request({"t": "0200"}, 5))
    assert results[0].check(OutcomeUnknown) and "TypeError" in str(results[0].value)
    assert ms[1].requests == []  # it was asked: never resent
    assert any("test_pool.Member (" in line and "TypeError" in line for line in lines), lines
    assert pool.pendingCount() == 0 and pool.clock.getDelayedCalls() == []


def test_a_member_that_never_ends_a_request_is_cancelled_after_the_deadline():
    ms = members(1)
    ms[0].script = [Deferred()]  # user code that never fires
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 5))
    pool.clock.advance(5 + MEMBER_GRACE - 0.01)
    assert results == []
    with capturedText() as lines:
        pool.clock.advance(0.01)
    assert results[0].check(CancelledAfterWrite) and results[0].check(OutcomeUnknown)
    assert any("did not end a request" in line for line in lines)
    assert pool.pendingCount() == 0 and pool.clock.getDelayedCalls() == []
    assert outcome(pool.stopService()) == [None]


def test_check_enabled_is_cleared_by_a_reconnect():
    """
    As in jPOS, enabling lasts while the member stays connected.
    """
    ms = members(2)
    pool = makePool(ms, checkEnabled=True)
    pool.enable("m0")
    assert picks(pool, 1) == ["m0"]
    ms[0].ready.set(False)
    ms[0].ready.set(True)
    assert not pool.isUsable(ms[0]) and not pool.ready
    pool.enable("m0")
    assert pool.isUsable(ms[0])


@implementer(IProbe)
class ProbedLink(MemoryLink):
    def __init__(self, name):
        MemoryLink.__init__(self, name)
        self.probes = []

    def probe(self):
        d = Deferred()
        self.probes.append(d)
        return d


def test_a_member_that_keeps_timing_out_is_suspended_until_it_answers_an_echo():
    """
    A hung issuer does not keep its share of round-robin traffic: with
    suspend-after-timeouts, N timeouts in a row take it out of rotation
    until an echo on it succeeds.
    """
    clock = Clock()
    links = [ProbedLink("a"), ProbedLink("b")]
    muxes = [started(QMUX(f"mux-{link.name}", link, clock)) for link in links]
    pool = started(
        MUXPool("pool", muxes, clock, strategyByName("round-robin"), suspendAfterTimeouts=2)
    )
    stan = iter(range(1, 1000))

    def send():
        return outcome(pool.request({"t": "0200", "11": "%06d" % next(stan), "41": "T1"}, 1))

    for _ in range(4):  # a, b, a, b: a never answers, b does
        send()
        for message in links[1].sent[len(links[1].sent) - 1 :]:
            links[1].deliver(answer(message))
        clock.advance(1)
    assert len(links[0].sent) == 2 and pool.isSuspended(muxes[0])
    assert len(links[0].probes) == 1 and pool.counters["ejections"] == 1
    for _ in range(6):
        send()
    assert len(links[0].sent) == 2 and len(links[1].sent) == 8  # all to b now
    links[0].probes[0].callback(None)  # an echo answered
    assert not pool.isSuspended(muxes[0])
    send()
    send()
    assert len(links[0].sent) == 3


def test_suspension_is_off_by_default():
    clock = Clock()
    links = [ProbedLink("a"), ProbedLink("b")]
    muxes = [started(QMUX(f"mux-{link.name}", link, clock)) for link in links]
    pool = started(MUXPool("pool", muxes, clock, strategyByName("round-robin")))
    for i in range(10):
        outcome(pool.request({"t": "0200", "11": "%06d" % i, "41": "T1"}, 1))
        clock.advance(1)
    assert len(links[0].sent) == 5 and links[0].probes == []


def test_a_member_that_answers_nothing_holds_at_most_max_unanswered_requests():
    """
    Without suspension, a member that answers nothing (a hung issuer) is
    stalled once it holds C{maxUnanswered} requests sent since its last
    answer: skipped while another member answers, so it cannot hold every
    request for a whole timeout; back once it answers or those requests
    end.  A lone stalled member is still used.
    """
    clock = Clock()
    links = [ProbedLink("a"), ProbedLink("b")]
    muxes = [started(QMUX(f"mux-{link.name}", link, clock)) for link in links]
    pool = started(MUXPool("pool", muxes, clock, strategyByName("round-robin"), maxUnanswered=3))
    stan = iter(range(1, 1000))

    def send(count=1):
        for _ in range(count):
            pool.request({"t": "0200", "11": "%06d" % next(stan), "41": "T1"}, 30)
            for message in links[1].sent[len(links[1].sent) - 1 :]:
                links[1].deliver(answer(message))  # b answers each at once, a none

    with capturedText() as lines:
        send(40)
    assert len(links[0].sent) == 3 and len(links[1].sent) == 37
    assert pool.isStalled(muxes[0]) and pool.counters["stalls"] == 1
    assert pool.status()["members"][0]["state"] == "stalled" and pool.ready
    assert len([x for x in lines if "holds 3 requests and answered none of them" in x]) == 1
    links[0].deliver(answer(links[0].sent[0]))  # it answers: back in rotation
    assert not pool.isStalled(muxes[0])
    send(2)
    assert len(links[0].sent) == 4
    muxes[1].ready.set(False)  # alone now: used even when stalled
    send(3)
    assert pool.isStalled(muxes[0]) and len(links[0].sent) == 7
    clock.advance(30)  # they time out: no longer held
    assert not pool.isStalled(muxes[0])


def test_a_stalled_member_is_tried_when_the_other_one_refused_the_request():
    """
    A stalled member is skipped only for a member that can take the
    request: once the other refused it (link not ready, though it said
    ready), the request goes to the stalled one rather than waiting.
    """
    ms = members(2)
    hung = Deferred()
    ms[0].script = [hung, hung]  # m0 answers nothing
    pool = makePool(ms, "round-robin", maxUnanswered=2)
    for _ in range(4):
        outcome(pool.request({"t": "0200"}, 30))
    assert pool.isStalled(ms[0]) and len(ms[0].requests) == 2
    ms[1].script = [fail(LinkNotReady("reconnecting"))]
    results = outcome(pool.request({"t": "0200"}, 30))
    assert len(ms[1].requests) == 3 and results == [{"t": "0210", "by": "m0"}]


def test_a_stopped_pool_holds_nothing():
    ms = members(2)
    pool = makePool(ms)
    slow = Deferred()
    ms[0].script = [slow]
    inflight = outcome(pool.request({"t": "0200"}, 5))
    waiting = started(MUXPool("w", members(1, ready=False), pool.clock))
    queued = outcome(waiting.request({"t": "0200"}, 5))
    stopped = outcome(pool.stopService())
    assert outcome(waiting.stopService()) == [None] and queued[0].check(NoMUXAvailable)
    assert not pool.ready and stopped == []
    assert all(observersOf(m.ready) == 0 for m in ms)
    assert outcome(pool.request({"t": "0200"}, 5))[0].check(NotSent)
    slow.callback({"t": "0210", "by": "m0"})
    assert inflight[0]["by"] == "m0" and stopped == [None]


def test_a_waiter_cancelled_while_others_are_woken_does_not_stop_them():
    """
    The pool's waiter loop skips a waiter a callback has just cancelled
    (no AlreadyCalledError) and still wakes the ones after it.
    """
    ms = members(1, ready=False)
    pool = makePool(ms)
    results = [outcome(d) for d in [pool.request({"t": "0200", "n": i}, 5) for i in range(3)]]
    requests = [pool.request({"t": "0200", "n": i}, 5) for i in range(3, 6)]
    requests[0].addBoth(lambda r: (requests[1].cancel(), r)[1])
    later = [outcome(d) for d in requests]
    ms[0].ready.set(True)
    assert all(r[0]["by"] == "m0" for r in results)
    assert later[0][0]["by"] == "m0" and later[1][0].check(CancelledBeforeWrite)
    assert later[2][0]["by"] == "m0"  # woken, not left to its deadline
    assert pool.pendingCount() == 0


def test_a_member_that_refused_is_tried_again_once_it_is_back():
    ms = members(1)
    ms[0].script = [fail(LinkNotReady("reconnecting"))]
    pool = makePool(ms)
    results = outcome(pool.request({"t": "0200"}, 30))
    assert results == []
    ms[0].ready.set(False)
    ms[0].ready.set(True)
    assert results[0]["by"] == "m0" and len(ms[0].requests) == 2


def test_a_suspended_member_is_probed_again_on_its_new_link():
    """
    A suspended member whose channel is redeployed is probed again on its
    new link (the old channel's probe is cancelled), so it does not stay
    out for good.
    """
    clock = Clock()
    old, new = ProbedLink("old"), ProbedLink("new")
    mux = started(QMUX("mux-a", old, clock))
    other = started(QMUX("mux-b", MemoryLink("b"), clock))
    pool = started(MUXPool("pool", [mux, other], clock, suspendAfterTimeouts=1))
    outcome(pool.request({"t": "0200", "11": "000001", "41": "T1"}, 1))
    clock.advance(1)
    assert pool.isSuspended(mux) and len(old.probes) == 1
    mux.setLink(new)
    old.probes[0].cancel()  # the old channel stopped
    assert pool.isSuspended(mux) and len(new.probes) == 1
    new.probes[0].callback(None)
    assert not pool.isSuspended(mux) and pool.isUsable(mux)


def test_admission_control_sheds_at_once_instead_of_queueing_into_timeouts():
    """
    A QMUX at its max-in-flight refuses a request at once with NoCapacity
    (counted as shed); a pool uses another member for it, never asks the
    full one, and when every member is full answers NoCapacity at once.
    A pool's own max-in-flight sheds before any member is asked.
    """
    from muxpool.errors import NoCapacity

    clock = Clock()
    links = [MemoryLink("a"), MemoryLink("b")]
    muxes = [started(QMUX(f"mux-{link.name}", link, clock, maxInFlight=2)) for link in links]
    stan = iter(range(1, 1000))

    def message():
        return {"t": "0200", "11": "%06d" % next(stan), "41": "T1"}

    direct = [outcome(muxes[0].request(message(), 30)) for _ in range(3)]
    assert direct[2][0].check(NoCapacity) and muxes[0].counters["shed"] == 1
    links[0].deliver(answer(links[0].sent[0]))  # one ends: room again
    assert outcome(muxes[0].request(message(), 30)) == []

    pool = started(MUXPool("pool", muxes, clock, strategyByName("primary-secondary")))
    assert muxes[0].atCapacity()  # a holds 2
    viaPool = [outcome(pool.request(message(), 30)) for _ in range(3)]
    assert len(links[0].sent) == 3 and len(links[1].sent) == 2  # b took them: a was full
    assert viaPool[2][0].check(NoCapacity) and pool.counters["shed"] == 1
    assert muxes[0].counters["shed"] == 1 and muxes[1].counters["shed"] == 0  # never asked
    assert clock.getDelayedCalls() and pool.pendingCount() == 2  # it did not wait

    capped = started(MUXPool("capped", [muxes[1]], clock, maxInFlight=1))
    links[1].deliver(answer(links[1].sent[0]))
    first = outcome(capped.request(message(), 30))
    second = outcome(capped.request(message(), 30))
    assert first == [] and second[0].check(NoCapacity) and capped.counters["shed"] == 1


def test_least_latency_sends_most_to_the_fast_member_and_tries_a_new_one():
    """
    P2C peak EWMA on a Clock: beside a member answering in 100 ms, one
    answering at once gets nearly everything; a member with no answer yet
    is tried; a slow answer raises a member's cost at once and fast ones
    bring it down over the decay time.
    """
    from muxpool.mux import LeastLatency

    h = PoolHarness(2, "least-latency", config={"seed": "7", "decay-time": "1000"})
    h.issuers[0].when().after(0.1)  # m0: 100 ms; m1 at once
    strategy = h.pool.strategy
    assert isinstance(strategy, LeastLatency) and strategy.decayTime == 1.0
    outcomes = []
    for _ in range(50):  # 16 in flight, as a busy switch
        for _ in range(16):
            h.request().addBoth(outcomes.append)
        h.advance(0.11)
    assert len(outcomes) == 800 and all(o["39"] == "00" for o in outcomes)
    counts = [len(i.requests) for i in h.issuers]
    assert counts[1] >= 0.8 * sum(counts) and counts[0] >= 1, counts
    assert strategy.cost(h.members[0]) > strategy.cost(h.members[1])
    # a new member (no answer yet) costs nothing: it is tried, one request
    # at a time until it answers
    fresh = h.members[0]
    strategy._costs.pop(fresh.name)
    assert strategy.cost(fresh) == 0.0
    h.issuers[0].when().never()
    fresh.request({"t": "0200", "11": "999999", "41": "T1"}, 30)
    assert strategy.cost(fresh) > 1e6
    # a peak at once, and fast answers bring it down over the decay time
    strategy.observe(fresh, 1.0, 100.0)
    assert strategy.cost(fresh) == 1.0 * 2  # times its pending plus one
    strategy.observe(fresh, 0.0, 101.0)  # one decay time later
    assert abs(strategy.cost(fresh) - 2 * math.exp(-1)) < 1e-9
    h.stop()


def test_least_latency_checks_its_settings():
    from muxpool.mux import StrategyConfigError

    with pytest.raises(StrategyConfigError, match="decay-time must be above 0"):
        strategyByName("least-latency", {"decay-time": "0"})
    with pytest.raises(StrategyConfigError, match="decay-time"):
        strategyByName("least-latency", {"decay-time": "soon"})


def test_outlier_codes_eject_a_member_for_the_ejection_time():
    """
    With consecutive-codes 3 and outlier-codes 91 96, a member whose issuer
    answers 96 three times in a row is ejected (said, counted, shown) and
    gets nothing for ejection-time (its link answers echoes: they prove
    nothing of its codes); a good answer in between starts the count again.
    """
    from muxpool.mux import Ejection

    clock = Clock()
    links = [ProbedLink("a"), ProbedLink("b")]
    muxes = [started(QMUX(f"mux-{link.name}", link, clock)) for link in links]
    rules = Ejection(consecutiveCodes=3, outlierCodes=frozenset({"91", "96"}))
    pool = started(MUXPool("pool", muxes, clock, strategyByName("round-robin"), ejection=rules))
    codes = {"a": iter(["96", "96", "00", "96", "96", "96"]), "b": None}
    stan = iter(range(1, 1000))

    def send(count):
        for _ in range(count):
            pool.request({"t": "0200", "11": "%06d" % next(stan), "41": "T1"}, 30)
            for link in links:
                for message in link.sent[len(link.answered) :]:
                    code = "00" if codes[link.name] is None else next(codes[link.name])
                    link.answered.append(message)
                    link.deliver(answer(message, code))

    for link in links:
        link.answered = []
    with capturedText() as lines:
        send(12)  # a: 96 96 00 96 96 96 -> ejected on its 6th
    assert len(links[0].sent) == 6 and pool.isEjected(muxes[0])
    assert pool.counters["ejections"] == 1 and links[0].probes == []
    assert pool.status()["members"][0]["state"] == "ejected"
    assert any("mux-a ejected: 3 answers in a row were 39=96" in x for x in lines), lines
    send(5)
    assert len(links[0].sent) == 6  # none while out
    clock.advance(30)  # ejection-time
    assert not pool.isEjected(muxes[0]) and pool.counters["returns"] == 1


def test_without_echo_the_ejection_time_doubles_and_the_share_ejected_is_capped():
    """
    A member whose link cannot prove its issuer answers comes back after
    ejection-time, doubling with each ejection in a row up to
    max-ejection-time; never more than max-ejection-percent of the members
    are out at once.
    """
    from muxpool.errors import RequestTimeout
    from muxpool.mux import Ejection

    ms = members(2)  # no link: nothing to probe
    rules = Ejection(consecutiveTimeouts=1, ejectionTime=1.0, maxEjectionTime=3.0)
    pool = makePool(ms, "round-robin", ejection=rules)
    clock = pool.clock
    outs = []
    with capturedText() as lines:
        for _ in range(3):
            for m in ms:
                m.script = [fail(RequestTimeout("no answer"))]
            outcome(pool.request({"t": "0200"}, 5))
            outcome(pool.request({"t": "0200"}, 5))
            ejected = [m for m in ms if pool.isEjected(m)]
            assert len(ejected) == 1  # 50% of 2: the other stays in rotation
            began = clock.seconds()
            while pool.isEjected(ejected[0]):
                clock.advance(0.25)
            outs.append(clock.seconds() - began)
    assert outs == [1.0, 2.0, 3.0], outs  # doubling, capped at 3 s
    assert any("max-ejection-percent 50" in x for x in lines), lines
    assert pool.counters["ejections"] == 3 and pool.counters["returns"] == 3


def test_the_pool_panics_when_too_few_members_are_left():
    """
    One member ejected and the other down: fewer than max-ejection-percent
    of the members are usable, so the pool panics and uses the ejected one
    (said once, counted); the panic ends when the other is back.
    """
    from muxpool.errors import RequestTimeout
    from muxpool.mux import Ejection

    ms = members(2)
    ms[0].script = [fail(RequestTimeout("no answer"))]
    pool = makePool(ms, ejection=Ejection(consecutiveTimeouts=1, ejectionTime=60.0))
    outcome(pool.request({"t": "0200"}, 5))
    assert pool.isEjected(ms[0]) and not pool.ejector.panicking
    with capturedText() as lines:
        ms[1].ready.set(False)  # down: nothing usable but the ejected one
    assert pool.ejector.panicking and pool.counters["panics"] == 1
    assert pool.status()["panicking"] and pool.ready
    assert len([x for x in lines if "panic: only 0 of 2 members usable" in x]) == 1
    assert outcome(pool.request({"t": "0200"}, 5)) == [{"t": "0210", "by": "m0"}]
    ms[1].ready.set(True)
    assert not pool.ejector.panicking and pool.isEjected(ms[0])
    assert outcome(pool.request({"t": "0200"}, 5)) == [{"t": "0210", "by": "m1"}]


def test_ejection_edges():
    """
    Review cases: a probe that never ends still returns the member after
    max-ejection-time; an ejection asked of a stopped pool does nothing;
    the doubling cannot overflow; the older spelling ejects a lone member
    (any share, no panic), as it suspended one before.
    """
    from muxpool.errors import RequestTimeout
    from muxpool.mux import Ejection

    clock = Clock()
    link = ProbedLink("a")
    mux = started(QMUX("mux-a", link, clock))
    rules = Ejection(consecutiveTimeouts=1, maxEjectionTime=60.0)
    pool = started(
        MUXPool(
            "pool", [mux, started(QMUX("mux-b", MemoryLink("b"), clock))], clock, ejection=rules
        )
    )
    pool.ejector.timedOut(mux)
    assert pool.isEjected(mux) and len(link.probes) == 1
    clock.advance(60)  # the echo never came back: back on the time limit
    assert not pool.isEjected(mux) and link.probes[0].called
    pool.ejector._inRow["mux-a"] = 5000  # no OverflowError
    pool.ejector.timedOut(mux)
    assert pool.isEjected(mux)
    pool.stopService()
    assert not pool.isEjected(mux)
    pool.ejector.timedOut(mux)  # stopped: nothing starts
    assert not pool.isEjected(mux) and clock.getDelayedCalls() == []

    lone = members(1)
    lone[0].script = [fail(RequestTimeout("no answer"))]
    old = makePool(lone, suspendAfterTimeouts=1)
    outcome(old.request({"t": "0200"}, 5))
    assert old.isEjected(lone[0]) and not old.ejector.panicking and not old.ready


def test_least_latency_tries_a_once_slow_member_again_in_time():
    from muxpool.mux import LeastLatency

    strategy = LeastLatency({"decay-time": "1000"})
    slow, fast = members(2)
    strategy.observe(slow, 30.0, 0.0)  # a timeout
    strategy.observe(fast, 0.01, 0.0)
    assert strategy.cost(slow) > strategy.cost(fast)
    for t in range(1, 20):  # the fast one goes on answering
        strategy.observe(fast, 0.01, float(t))
    assert strategy.cost(slow) < strategy.cost(fast) * 10  # faded: it gets draws again


def test_a_pool_of_full_pools_sheds_at_once():
    from muxpool.errors import NoCapacity

    clock = Clock()
    inner = started(
        MUXPool(
            "inner",
            [started(QMUX("q", MemoryLink("l"), clock, maxInFlight=1))],
            clock,
        )
    )
    outer = started(MUXPool("outer", [inner], clock))
    first = outcome(outer.request({"t": "0200", "11": "000001", "41": "T1"}, 30))
    second = outcome(outer.request({"t": "0200", "11": "000002", "41": "T1"}, 30))
    assert first == [] and second[0].check(NoCapacity)  # at once, not at the deadline
