"""
Outcomes without a Deferred per layer: L{IDirectMUX.requestTo} on QMUX and
MUXPool, and Forward over them.  The same three outcomes as
L{IMUX.request}, given to an L{IOutcome} once; members in user code (plain
L{IMUX}) still go through their Deferreds.
"""

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from muxpool import Readiness
from muxpool.errors import (
    CancelledAfterWrite,
    CancelledBeforeWrite,
    LinkNotReady,
    NoCapacity,
    RequestTimeout,
)
from muxpool.interfaces import IMUX, IDirectMUX, IOutcome
from muxpool.listeners import Forward
from muxpool.mux import MEMBER_GRACE, QMUX, MUXPool, RoundRobin
from muxpool.testing import MemoryIssuer, MemoryLink
from tests.helpers import started
from tests.logcapture import capturedText

REQUEST = {"t": "0200", "3": "000000", "4": "000000001000", "11": "000001", "41": "TERM0001"}


@implementer(IOutcome)
class Recorded:
    """
    An outcome that records what it was given, and how often.
    """

    def __init__(self):
        self.given = []

    def callback(self, response):
        self.given.append(response)

    def errback(self, error):
        self.given.append(error.value if isinstance(error, Failure) else error)


def makeMux(ready=True, **kwargs):
    clock = Clock()
    link = MemoryLink(ready=ready)
    issuer = MemoryIssuer(link, clock)
    return started(QMUX("direct", link, clock, **kwargs)), issuer, clock


def test_interfaces():
    mux, _, clock = makeMux()
    pool = started(MUXPool("pool", [mux], clock, RoundRobin()))
    assert verifyObject(IDirectMUX, mux) and verifyObject(IDirectMUX, pool)
    assert verifyObject(IOutcome, Recorded())
    mux.link.peer = lambda message: None  # nobody answers: it stays pending
    handle = pool.requestTo(Recorded(), dict(REQUEST), 5)
    assert verifyObject(IOutcome, handle)  # a pool request is its member's outcome


def test_qmux_gives_the_response_once_and_no_deferred():
    mux, issuer, _ = makeMux()
    issuer.when().after(1)
    outcome = Recorded()
    handle = mux.requestTo(outcome, dict(REQUEST), 5)
    assert not isinstance(handle, Deferred) and outcome.given == []
    mux.clock.advance(1)
    [response] = outcome.given
    assert response["39"] == "00" and response["11"] == "000001"
    assert mux.pendingCount() == 0


def test_qmux_answered_while_sending_returns_no_handle():
    mux, issuer, _ = makeMux()  # the MemoryIssuer answers inside send()
    outcome = Recorded()
    assert mux.requestTo(outcome, dict(REQUEST), 5) is None
    assert outcome.given[0]["39"] == "00"


def test_qmux_refusal_is_given_at_once():
    mux, _, _ = makeMux(maxInFlight=1)
    mux.link.peer = lambda message: None
    first, second = Recorded(), Recorded()
    assert mux.requestTo(first, dict(REQUEST), 5) is not None
    assert mux.requestTo(second, dict(REQUEST, **{"11": "000002"}), 5) is None
    [refused] = second.given
    assert isinstance(refused, NoCapacity) and first.given == []


def test_qmux_handle_cancels_as_the_deferred_would():
    mux, issuer, clock = makeMux(ready=False)
    waiting = Recorded()
    mux.requestTo(waiting, dict(REQUEST), 5).cancel()
    assert isinstance(waiting.given[0], CancelledBeforeWrite)
    mux.link.ready.set(True)
    issuer.when().never()
    written = Recorded()
    mux.requestTo(written, dict(REQUEST, **{"11": "000002"}), 5).cancel()
    assert isinstance(written.given[0], CancelledAfterWrite)
    assert len(waiting.given) == len(written.given) == 1


def test_qmux_timeout_and_not_ready():
    mux, issuer, clock = makeMux()
    issuer.when().never()
    late = Recorded()
    mux.requestTo(late, dict(REQUEST), 5)
    clock.advance(5)
    assert isinstance(late.given[0], RequestTimeout)
    mux.link.ready.set(False)
    unsent = Recorded()
    mux.requestTo(unsent, dict(REQUEST, **{"11": "000002"}), 2)
    clock.advance(2)
    assert isinstance(unsent.given[0], LinkNotReady)


@implementer(IMUX)
class UserMUX:
    """
    A member in user code: a plain IMUX whose Deferreds a test fires.
    """

    name = "user"

    def __init__(self):
        self.ready = Readiness(True)
        self.asked = []

    def request(self, message, timeout):
        d = Deferred()
        self.asked.append(d)
        return d

    def send(self, message):
        pass

    def isConnected(self):
        return True

    def pendingCount(self):
        return len(self.asked)


def test_pool_over_direct_and_user_members():
    mux, issuer, clock = makeMux()
    user = UserMUX()
    pool = started(MUXPool("pool", [mux, user], clock, RoundRobin()))
    first, second = Recorded(), Recorded()
    pool.requestTo(first, dict(REQUEST), 5)  # the QMUX: answered at once
    handle = pool.requestTo(second, dict(REQUEST, **{"11": "000002"}), 5)  # the user MUX
    assert first.given[0]["39"] == "00" and second.given == []
    user.asked[0].callback({"t": "0210", "11": "000002", "41": "TERM0001", "39": "05"})
    assert second.given[0]["39"] == "05"
    assert handle is not None and pool.pendingCount() == 0


def test_pool_retries_a_refusing_direct_member_on_the_next():
    down, _, clock = makeMux()
    down.link.refuse = LinkNotReady("refused")  # every write: not sent
    up = started(QMUX("up", MemoryLink(), clock))
    MemoryIssuer(up.link, clock)
    pool = started(MUXPool("pool", [down, up], clock, RoundRobin()))
    outcome = Recorded()
    assert pool.requestTo(outcome, dict(REQUEST), 5) is None  # answered while asking
    assert outcome.given[0]["39"] == "00" and len(outcome.given) == 1
    assert pool.counters["retries"] == 1


def test_forward_over_a_qmux_answers_and_declines():
    mux, issuer, clock = makeMux()
    source = MemoryLink()
    forward = Forward(mux, timeout=5, clock=clock)
    forward.process(source, dict(REQUEST))
    assert source.sent[-1]["39"] == "00"
    issuer.when().never()
    forward.process(source, dict(REQUEST, **{"11": "000002"}))
    clock.advance(5)
    assert source.sent[-1]["39"] == "68"  # outcome unknown: reversal needed
    mux.link.ready.set(False)
    forward.process(source, dict(REQUEST, **{"11": "000003"}))
    clock.advance(5)
    assert source.sent[-1]["39"] == "91" and len(source.sent) == 3


@implementer(IDirectMUX)
class RecordingMUX(UserMUX):
    """
    A direct MUX that keeps the outcome objects it is given.
    """

    def requestTo(self, outcome, message, timeout):
        self.asked.append(outcome)


def test_forward_gives_a_direct_mux_an_outcome_and_no_deferred():
    mux = RecordingMUX()
    source = MemoryLink()
    Forward(mux).process(source, dict(REQUEST))
    [outcome] = mux.asked
    assert verifyObject(IOutcome, outcome) and not isinstance(outcome, Deferred)
    outcome.errback(LinkNotReady("down"))
    assert source.sent[-1]["39"] == "91"


class Raising(Recorded):
    """
    An outcome whose receiver raises (a bug above the MUX).
    """

    def callback(self, response):
        Recorded.callback(self, response)
        raise RuntimeError("receiver bug")

    def errback(self, error):
        Recorded.errback(self, error)
        raise RuntimeError("receiver bug")


@pytest.mark.parametrize("overPool", [False, True])
def test_a_receiver_that_raises_is_logged_and_the_mux_still_drains(overPool):
    mux, issuer, clock = makeMux()
    issuer.when().after(1)
    asked = started(MUXPool("pool", [mux], clock, RoundRobin())) if overPool else mux
    outcome = Raising()
    drained = []
    with capturedText() as lines:
        asked.requestTo(outcome, dict(REQUEST), 5)
        mux.whenDrained(mux.link).addCallback(drained.append)
        if overPool:
            asked.whenDrained().addCallback(drained.append)
        clock.advance(1)
    assert len(outcome.given) == 1 and outcome.given[0]["39"] == "00"
    assert drained == [None] * (2 if overPool else 1)
    assert mux.pendingOn(mux.link) == 0 and asked.pendingCount() == 0
    assert any("receiver of an outcome" in line and "RuntimeError" in line for line in lines)


@pytest.mark.parametrize("overPool", [False, True])
def test_a_refusal_to_a_receiver_that_raises_is_contained(overPool):
    mux, _, clock = makeMux(maxInFlight=0)  # every request refused at once
    asked = started(MUXPool("pool", [mux], clock, RoundRobin(), maxInFlight=0)) if overPool else mux
    outcome = Raising()
    with capturedText() as lines:
        assert asked.requestTo(outcome, dict(REQUEST), 5) is None  # nothing raised
    assert isinstance(outcome.given[0], NoCapacity) and len(outcome.given) == 1
    assert any("receiver of an outcome" in line for line in lines)


class Falsy(Recorded):
    """
    An outcome that is false as a truth value (it has a length).
    """

    def __len__(self):
        return 0


def test_an_outcome_that_is_false_still_gets_its_outcome():
    mux, _, clock = makeMux()
    pool = started(MUXPool("pool", [mux], clock, RoundRobin()))
    for asked in (mux, pool):
        outcome = Falsy()
        asked.requestTo(outcome, dict(REQUEST, **{"11": "00000%d" % len(mux.link.sent)}), 5)
        assert outcome.given[0]["39"] == "00"


def test_forward_answers_once_when_its_source_raises_on_a_refusal():
    mux, issuer, clock = makeMux()
    issuer.when().never()
    sent = []

    class Source(MemoryLink):
        def send(self, message):
            sent.append(message)
            if len(sent) == 1:
                raise RuntimeError("a source in user code")

    forward = Forward(mux, timeout=5, clock=clock)
    forward.process(MemoryLink(), dict(REQUEST))  # pending: the next one is a duplicate
    with capturedText():
        forward.process(Source(), dict(REQUEST))
    assert [m["39"] for m in sent] == ["91"]  # refused, not sent: one answer, no 68


@implementer(IDirectMUX)
class Silent(UserMUX):
    """
    A direct MUX in user code that never ends a request, and gives no handle.
    """

    def requestTo(self, outcome, message, timeout):
        self.asked.append(outcome)


def test_a_direct_member_in_user_code_that_never_ends_a_request_is_timed_by_the_pool():
    clock = Clock()
    pool = started(MUXPool("pool", [Silent()], clock, RoundRobin()))
    outcome = Recorded()
    with capturedText() as lines:
        pool.requestTo(outcome, dict(REQUEST), 5)
        clock.advance(5 + MEMBER_GRACE)
    [ended] = outcome.given
    assert isinstance(ended, CancelledAfterWrite)  # it was asked: outcome unknown
    assert any("did not end a request" in line for line in lines)


@implementer(IDirectMUX)
class Unruly(UserMUX):
    """
    A direct MUX in user code that breaks the contract as told: it answers
    and then raises, answers twice, or refuses and still gives a handle.
    """

    def __init__(self, how):
        UserMUX.__init__(self)
        self.how = how
        self.cancelled = 0

    def requestTo(self, outcome, message, timeout):
        response = {"t": "0210", "11": message["11"], "41": message["41"], "39": "00"}
        self.asked.append(outcome)
        if self.how == "answer, raise":
            outcome.callback(response)
            raise RuntimeError("after the answer")
        if self.how == "answer twice":
            outcome.callback(response)
            outcome.callback(dict(response, **{"39": "05"}))
        if self.how == "refuse, give a handle":
            outcome.errback(LinkNotReady("down"))
        return self  # a handle

    def cancel(self):
        self.cancelled += 1


@pytest.mark.parametrize("how", ["answer, raise", "answer twice"])
def test_a_user_direct_mux_that_answers_twice_or_raises_after_gives_one_answer(how):
    clock = Clock()
    pool = started(MUXPool("pool", [Unruly(how)], clock, RoundRobin()))
    source = MemoryLink()
    with capturedText() as lines:
        Forward(pool, timeout=5, clock=clock).process(source, dict(REQUEST))
        Forward(Unruly(how), timeout=5, clock=clock).process(source, dict(REQUEST))
        clock.advance(10)
    assert [m["39"] for m in source.sent] == ["00", "00"]
    if how == "answer, raise":  # logged by type and place, never by its text (card data)
        failed = [line for line in lines if "failed after" in line]
        assert len(failed) == 2 and all("RuntimeError at" in line for line in failed)
        assert not any("after the answer" in line for line in lines)


def test_a_member_that_refuses_and_gives_a_handle_is_not_cancelled_for_the_next():
    clock = Clock()
    unruly, other = Unruly("refuse, give a handle"), UserMUX()
    pool = started(MUXPool("pool", [unruly, other], clock, RoundRobin()))
    outcome = Recorded()
    handle = pool.requestTo(outcome, dict(REQUEST), 5)  # refused by one, sent to the other
    handle.cancel()
    assert unruly.cancelled == 0 and len(other.asked) == 1 and other.asked[0].called


def test_a_late_answer_after_the_pool_gave_up_is_dropped():
    clock = Clock()
    silent = Silent()
    pool = started(MUXPool("pool", [silent], clock, RoundRobin()))
    outcome = Recorded()
    with capturedText():
        pool.requestTo(outcome, dict(REQUEST), 5)
        clock.advance(5 + MEMBER_GRACE)
        silent.asked[0].callback({"t": "0210", "11": "000001", "41": "TERM0001", "39": "00"})
    [ended] = outcome.given  # one outcome: outcome unknown, and nothing raised
    assert isinstance(ended, CancelledAfterWrite)


def test_cancelling_a_request_a_user_direct_mux_took_without_a_handle_is_outcome_unknown():
    clock = Clock()
    pool = started(MUXPool("pool", [Silent()], clock, RoundRobin()))
    outcome = Recorded()
    state = pool.requestTo(outcome, dict(REQUEST), 5)
    state.cancel()
    [ended] = outcome.given
    assert isinstance(ended, CancelledAfterWrite)  # it was asked: the issuer may have it


class Stubborn(Unruly):
    """
    Gives a handle whose cancel does nothing, and never answers.
    """

    def __init__(self):
        Unruly.__init__(self, "never")


def test_a_handle_that_does_not_cancel_still_ends_at_the_pools_timer():
    clock = Clock()
    member = Stubborn()
    pool = started(MUXPool("pool", [member], clock, RoundRobin()))
    outcome = Recorded()
    with capturedText():
        pool.requestTo(outcome, dict(REQUEST), 5)
        clock.advance(5 + MEMBER_GRACE)
    assert member.cancelled == 1 and isinstance(outcome.given[0], CancelledAfterWrite)
    assert pool.pendingCount() == 0
