"""
QMUX: keys as jPOS builds them, the pending table, and the three outcomes.
"""

import pytest
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from muxpool.errors import (
    CancelledAfterWrite,
    CancelledBeforeWrite,
    DuplicateKey,
    EncodeFailed,
    LinkLost,
    LinkNotReady,
    MissingKey,
    NotSent,
    OutcomeUnknown,
    RequestCancelled,
    RequestTimeout,
)
from muxpool.interfaces import IMUX, IRequestListener, ISource
from muxpool.mux import QMUX, KeyBuilder
from muxpool.testing import MemoryIssuer, MemoryLink, answer, attachmentsOf, observersOf
from tests.helpers import started
from tests.logcapture import capturedText


def request(stan="000001", tid="TERM0001", mti="0200", **extra):
    message = {"t": mti, "11": stan, "41": tid, "3": "000000", "4": "000000001000"}
    message.update(extra)
    return message


def outcome(d):
    results = []
    d.addBoth(results.append)
    return results


def makeMux(**kwargs):
    clock = Clock()
    link = MemoryLink()
    mux = started(QMUX("test-mux", link, clock, **kwargs))
    return mux, link, clock


# -- keys ------------------------------------------------------------------

KEY_CASES = [
    # (message, key fields, overrides, mapping, expected key); as in jPOS the
    # mapping covers the first three MTI digits, so 0400 and 0401 agree.
    (
        {"t": "0200", "11": "000001", "41": "TERM0001"},
        None,
        None,
        None,
        "020.00000000TERM0001.000001",
    ),
    (
        {"t": "0210", "11": "000001", "41": "TERM0001"},
        None,
        None,
        None,
        "020.00000000TERM0001.000001",
    ),
    ({"t": "0800", "11": "1"}, None, None, None, "080.000001"),
    ({"t": "0810", "11": "  1  "}, None, None, None, "080.000001"),
    ({"t": "0430", "11": "42", "41": " T1 "}, None, None, None, "042.00000000000000T1.000042"),
    ({"t": "2100", "11": "7"}, None, None, None, "210.000000000007"),
    ({"t": "0401", "11": "1"}, None, None, None, "040.000001"),
    ({"t": "0200", "11": "000001", "37": "RRN000000001"}, ("37",), None, None, "020.RRN000000001"),
    (
        {"t": "0800", "11": "000001", "70": "301"},
        None,
        {"08": ("70", "11")},
        None,
        "080.301.000001",
    ),
    (
        {"t": "0200", "3": "310000", "11": "9", "41": "T"},
        None,
        {"02:310000": ("11",), "02": ("41",)},
        None,
        "020.000009",
    ),
    (
        {"t": "0200", "3": "000000", "11": "9", "41": "T"},
        None,
        {"02:310000": ("11",), "02": ("41",)},
        None,
        "020.000000000000000T",
    ),
    (
        {"t": "0210", "11": "1"},
        None,
        None,
        ("0123456789", "0123456789", "0123456789"),
        "021.000001",
    ),
    # a 3-digit MTI is zero-padded for mapping, but (as in jPOS) the raw
    # MTI starting with 2 asks for a 12-digit STAN
    ({"t": "210", "11": "1"}, None, None, None, "020.000000000001"),
]


@pytest.mark.parametrize("message,fields,overrides,mapping,expected", KEY_CASES)
def test_key_like_jpos(message, fields, overrides, mapping, expected):
    builder = KeyBuilder(fields or ("41", "11"), overrides, mapping)
    assert builder.key(message) == expected


# -- outcomes --------------------------------------------------------------


def test_verify_interfaces():
    mux, _, _ = makeMux()
    assert verifyObject(IMUX, mux)
    assert verifyObject(ISource, mux)


def test_response():
    mux, link, clock = makeMux()
    results = outcome(mux.request(request(), 5))
    assert link.sent == [request()]
    clock.advance(0.25)
    link.deliver(answer(request()))
    assert results[0]["39"] == "00"
    counters = mux.counters
    assert counters["tx"] == 1 and counters["rx"] == 1 and counters["rx_pending"] == 0
    assert mux.latency.summary()["p50_ms"] == 250.0


def test_many_requests_share_one_timer_and_each_times_out_at_its_own_deadline():
    # One timer for the table, not one DelayedCall per request: memory per
    # request in flight counts when an issuer is slow.
    mux, link, clock = makeMux()
    results = [outcome(mux.request(request(stan="%06d" % i), 5 + i % 3)) for i in range(300)]
    assert len(clock.getDelayedCalls()) == 1
    link.deliver(answer(request(stan="%06d" % 1)))  # answered: no longer timed
    clock.advance(5)
    assert len([r for r in results if r]) == 1 + 100  # the answer, and those with 5 s
    clock.advance(2)
    assert all(r[0].check(RequestTimeout) for i, r in enumerate(results) if i != 1)
    assert results[1][0]["39"] == "00"
    assert mux.pendingCount() == 0 and clock.getDelayedCalls() == []


def test_timeout_is_outcome_unknown_and_late_response_is_unhandled():
    unhandled = []
    mux, link, clock = makeMux(unhandled=unhandled.append)
    results = outcome(mux.request(request(), 5))
    clock.advance(5)
    assert results[0].check(RequestTimeout) and results[0].check(OutcomeUnknown)
    link.deliver(answer(request()))
    assert len(unhandled) == 1
    assert mux.counters["rx_expired"] == 1
    assert mux.counters["rx_unhandled"] == 1 and mux.counters["rx_late"] == 1
    assert mux.pendingCount() == 0


def test_duplicate_key_refused_first_kept():
    mux, link, clock = makeMux()
    first = outcome(mux.request(request(), 5))
    second = outcome(mux.request(request(), 5))
    assert second[0].check(DuplicateKey) and second[0].check(NotSent)
    assert "duplicate key" in str(second[0].value)
    assert len(link.sent) == 1 and first == []
    link.deliver(answer(request()))
    assert first[0]["39"] == "00"


def test_missing_key_fields():
    mux, link, clock = makeMux()
    results = outcome(mux.request({"t": "0200", "3": "000000"}, 5))
    assert results[0].check(MissingKey) and results[0].check(NotSent)
    assert "41, 11" in str(results[0].value)
    assert link.sent == []


def test_link_lost_after_write_fails_at_once():
    mux, link, clock = makeMux()
    results = outcome(mux.request(request(), 30))
    link.lose()
    assert results[0].check(LinkLost) and results[0].check(OutcomeUnknown)
    assert clock.getDelayedCalls() == []


def test_link_down_before_write_waits_then_not_sent():
    mux, link, clock = makeMux()
    link.ready.set(False)
    results = outcome(mux.request(request(), 5))
    clock.advance(4.9)
    assert results == [] and link.sent == []
    clock.advance(0.1)
    assert results[0].check(LinkNotReady) and results[0].check(NotSent)
    assert mux.counters["tx_expired"] == 1


def test_waiting_request_goes_out_when_link_comes_up():
    mux, link, clock = makeMux()
    link.ready.set(False)
    results = outcome(mux.request(request(), 5))
    clock.advance(2)
    link.ready.set(True)
    assert link.sent == [request()]
    link.deliver(answer(request()))
    assert results[0]["39"] == "00"


def test_encode_error_is_not_sent():
    mux, link, clock = makeMux()
    link.refuse = EncodeFailed("cannot pack field 4")
    results = outcome(mux.request(request(), 5))
    assert results[0].check(EncodeFailed) and results[0].check(NotSent)
    assert mux.pendingCount() == 0


def test_ignore_rc_keeps_waiting():
    mux, link, clock = makeMux(ignoreRC={"91"})
    results = outcome(mux.request(request(), 5))
    link.deliver(answer(request(), "91"))
    assert results == []
    link.deliver(answer(request()))
    assert results[0]["39"] == "00"


def test_requests_are_not_matched_unless_return_rejects():
    mux, link, clock = makeMux()
    results = outcome(mux.request(request(), 5))
    link.deliver(request())  # same key, but a request MTI
    assert results == []
    rejects, link2, _ = makeMux(returnRejects=True)
    results2 = outcome(rejects.request(request(), 5))
    link2.deliver(request())
    assert results2[0]["t"] == "0200"


@implementer(IRequestListener)
class Listener:
    def __init__(self, handles):
        self.handles = handles
        self.seen = []

    def process(self, source, message):
        self.seen.append((source, message))
        return self.handles


def test_request_listeners_chain():
    first, second, third = Listener(False), Listener(True), Listener(True)
    mux, link, clock = makeMux(listeners=[first, second, third])
    link.deliver(request(mti="0800", **{"70": "301"}))
    assert len(first.seen) == 1 and len(second.seen) == 1 and third.seen == []
    assert first.seen[0][0] is link
    assert mux.counters["rx_forwarded"] == 1


def test_cancel_removes_pending():
    mux, link, clock = makeMux()
    d = mux.request(request(), 5)
    d.addErrback(lambda f: None)
    d.cancel()
    assert mux.pendingCount() == 0 and clock.getDelayedCalls() == []


def test_send_without_waiting():
    mux, link, clock = makeMux()
    mux.send(request())
    assert link.sent == [request()] and mux.pendingCount() == 0
    link.ready.set(False)
    with pytest.raises(LinkNotReady):
        mux.send(request())


def test_readiness_mirrors_link():
    mux, link, clock = makeMux()
    assert mux.isConnected()
    link.ready.set(False)
    assert not mux.isConnected() and not mux.ready


def test_a_packager_that_raises_is_not_sent_and_logs_no_data():
    """
    Any failure of a user's packager ends the request as "not sent" (nothing
    was written), and its exception text (which may carry field data) is
    not repeated.
    """
    from zope.interface import implementer

    from muxpool.channel import ChannelSpec
    from muxpool.errors import EncodeFailed
    from muxpool.interfaces import IPackager
    from muxpool.link import LinkBase
    from tests.helpers import connectedProtocol
    from tests.logcapture import capturedText

    @implementer(IPackager)
    class Broken:
        name = "broken"
        binaryFields = frozenset()

        def pack(self, message):
            raise KeyError("4761739001010119")

        def unpack(self, data):
            return {}

    spec = ChannelSpec.fromConfig("NACChannel", Broken())
    link = LinkBase("link", spec)
    link.protocol, transport, _ = connectedProtocol(spec)
    link.ready.set(True)
    mux = started(QMUX("m", link, Clock()))
    with capturedText() as lines:
        results = outcome(mux.request(request(), 5))
    assert results[0].check(EncodeFailed)
    assert "KeyError" in str(results[0].value)
    assert transport.value() == b"" and mux.pendingCount() == 0
    assert "4761739001010119" not in "\n".join(lines) + str(results[0].value)


# -- the request path ----------------------------------------------------------


def answeringLink():
    """
    A link whose peer answers inside send(), before send() returns.
    """
    link = MemoryLink()
    MemoryIssuer(link)
    return link


def test_a_synchronous_answer_is_matched():
    """
    An answer given inside send(), before send() returns, is matched to
    its request, not counted as "unhandled".
    """
    clock = Clock()
    mux = started(QMUX("m", answeringLink(), clock))
    results = outcome(mux.request(request(), 5))
    assert results[0]["39"] == "00"
    assert mux.counters["tx"] == 1 and mux.counters["rx"] == 1
    assert mux.counters["rx_unhandled"] == 0
    assert mux.pendingCount() == 0 and clock.getDelayedCalls() == []


def test_cancel_before_write_is_not_sent():
    mux, link, clock = makeMux()
    link.ready.set(False)
    d = mux.request(request(), 5)
    results = outcome(d)
    d.cancel()
    assert results[0].check(CancelledBeforeWrite) and results[0].check(NotSent)
    assert results[0].check(RequestCancelled)
    assert mux.pendingCount() == 0 and clock.getDelayedCalls() == [] and link.sent == []


def test_cancel_after_write_is_outcome_unknown_and_a_late_answer_is_counted():
    """
    Cancelling a written request gives an outcome (cancelled after write:
    outcome unknown), not CancelledError, and keeps the key so a late
    answer is counted as late.
    """
    mux, link, clock = makeMux()
    d = mux.request(request(), 5)
    results = outcome(d)
    d.cancel()
    assert results[0].check(CancelledAfterWrite) and results[0].check(OutcomeUnknown)
    assert not results[0].check(NotSent)
    link.deliver(answer(request()))
    assert mux.counters["rx_late"] == 1 and mux.counters["rx_unhandled"] == 1


def test_cancelling_a_sibling_while_the_link_is_lost():
    """
    A callback that cancels a sibling while the link is lost raises nothing
    out of the link, and every request, a third one included, fails at
    once rather than at its timeout.
    """
    mux, link, clock = makeMux()
    first = mux.request(request("000001"), 30)
    second = mux.request(request("000002"), 30)
    third = mux.request(request("000003"), 30)
    results = {}
    first.addBoth(lambda r: (results.__setitem__(1, r), second.cancel())[0])
    second.addBoth(lambda r: results.__setitem__(2, r))
    third.addBoth(lambda r: results.__setitem__(3, r))
    link.lose()
    assert results[1].check(LinkLost)
    assert results[2].check(OutcomeUnknown)  # cancelled or lost: never both
    assert results[3].check(LinkLost)
    assert mux.pendingCount() == 0 and clock.getDelayedCalls() == []


def test_never_written_after_the_deadline():
    """
    A link that becomes ready in the reactor turn in which the deadline
    passed does not get the message: it stays "not sent", never "outcome
    unknown".
    """
    mux, link, clock = makeMux()
    link.ready.set(False)
    results = outcome(mux.request(request(), 5))
    clock.rightNow = 5.0  # the deadline's turn: its timer is due, not yet run
    link.ready.set(True)
    assert link.sent == []
    assert results[0].check(LinkNotReady) and "deadline passed" in str(results[0].value)
    zero = outcome(mux.request(request("000002"), 0))
    assert zero[0].check(NotSent) and link.sent == []
    assert clock.getDelayedCalls() == []  # expired in its deadline's turn: no timer left


def test_draining_keeps_counts_per_link():
    """
    Drain waiters keep counts per link: a completion never walks the table
    of pending requests (which would be quadratic).
    """

    class Watched(dict):
        walks = 0

        def walk(self, how):
            Watched.walks += 1
            return how(self)

        def values(self):
            return self.walk(dict.values)

        def items(self):
            return self.walk(dict.items)

        def keys(self):
            return self.walk(dict.keys)

        def __iter__(self):
            return self.walk(dict.__iter__)

    mux, link, clock = makeMux()
    mux._pending = Watched()
    other = MemoryLink("other")
    sent = [request("%06d" % i) for i in range(2000)]
    for message in sent:
        mux.request(message, 30)
    drained = outcome(mux.whenDrained(other))
    everything = outcome(mux.whenDrained(link))
    assert drained == [None] and everything == []  # nothing was written on "other"
    for message in sent:
        link.deliver(answer(message))
    assert everything == [None] and Watched.walks == 0
    assert mux.pendingOn(link) == 0 and mux.counters["rx"] == 2000


def test_unmatched_responses_go_to_the_listeners_first():
    """
    As jPOS's processUnhandled, a late approval reaches the request
    listeners (to reverse it) before it is counted as unhandled.
    """
    reversals = Listener(True)
    mux, link, clock = makeMux(listeners=[reversals])
    results = outcome(mux.request(request(), 5))
    clock.advance(5)
    assert results[0].check(RequestTimeout)
    link.deliver(answer(request()))
    assert len(reversals.seen) == 1 and reversals.seen[0][1]["39"] == "00"
    assert mux.counters["rx_late"] == 1 and mux.counters["rx_forwarded"] == 1
    assert mux.counters["rx_unhandled"] == 0


def test_unhandled_goes_to_a_listener_or_a_callable():
    got = []
    sink = Listener(True)
    for handler, check in ((got.append, lambda: got), (sink, lambda: sink.seen)):
        mux, link, clock = makeMux(unhandled=handler)
        link.deliver(answer(request()))
        assert len(check()) == 1 and mux.counters["rx_unhandled"] == 1


def test_an_unhandled_handler_that_raises_is_contained():
    def boom(message):
        raise ValueError(message["2"])

    mux, link, clock = makeMux(unhandled=boom)
    with capturedText() as lines:
        link.deliver(answer(request(), fields={"2": "4761739001010119"}))
    text = "\n".join(lines)
    assert "ValueError at test_mux.py" in text and "4761739001010119" not in text


def test_ignored_response_codes_are_counted():
    mux, link, clock = makeMux(ignoreRC={"91"})
    mux.request(request(), 5)
    link.deliver(answer(request(), "91"))
    assert mux.counters["rx_ignored"] == 1 and mux.pendingCount() == 1


def test_header_in_the_key():
    """
    As in jPOS, the `header` token in <key> puts the header in the key.
    """
    builder = KeyBuilder(("41", "11", "header"))
    assert builder.fields == ("41", "11") and builder.headerIsKey
    with_header = {"t": "0200", "11": "1", "41": "T", "h": "6000120034"}
    assert builder.key(with_header) == "020.6000120034.000000000000000T.000001"
    assert builder.key(dict(with_header, h="6000340012")) != builder.key(with_header)
    assert KeyBuilder(("11",), {"08": ("header", "11")}).headerIsKey


def test_a_stopped_qmux_is_not_ready_and_holds_nothing():
    """
    A stopped QMUX is not ready and leaves no observer on the link.
    Stopping drains: what was written gets its answer, what waits for the
    link ends "not sent" at once.
    """
    mux, link, clock = makeMux()
    written = outcome(mux.request(request("000001"), 30))
    link.ready.set(False)
    waiting = outcome(mux.request(request("000002"), 30))
    stopped = outcome(mux.stopService())
    assert waiting[0].check(LinkNotReady) and stopped == []
    link.ready.set(True)
    assert not mux.ready and not mux.isConnected()
    assert [m["11"] for m in link.sent] == ["000001"]
    link.deliver(answer(request("000001")))
    assert written[0]["39"] == "00" and stopped == [None]
    assert attachmentsOf(link) == 0 and observersOf(link.ready) == 0
    assert outcome(mux.request(request("000003"), 5))[0].check(NotSent)


class LosingLink(MemoryLink):
    """
    A link whose connection is lost inside send(), which then raises.
    """

    def __init__(self, error):
        MemoryLink.__init__(self)
        self.error = error

    def send(self, message):
        self.lose()
        raise self.error


@pytest.mark.parametrize("error", [LinkNotReady("gone"), KeyError("a bug")])
def test_a_link_lost_inside_send_gives_one_outcome(error):
    clock = Clock()
    mux = started(QMUX("m", LosingLink(error), clock))
    results = outcome(mux.request(request(), 5))
    assert len(results) == 1 and results[0].check(OutcomeUnknown)
    assert mux.counters["rx_expired"] == 1 and mux.pendingCount() == 0
    assert mux.pendingOn(mux.link) == 0 and clock.getDelayedCalls() == []


def test_a_flood_of_unmatched_responses_is_counted_each_and_logged_at_a_bounded_rate():
    """
    Responses that match no request are each counted (rx_unhandled), and
    written to the log once an interval, with how many more came.
    """
    clock = Clock()
    link = MemoryLink("issuer-channel")
    mux = QMUX("m", link, clock)
    mux.startService()
    with capturedText() as lines:
        for i in range(500):
            link.deliver({"t": "0210", "11": "%06d" % i, "41": "TERM0001", "39": "00"})
    assert mux.counters["rx_unhandled"] == 500
    assert len([line for line in lines if "unhandled message" in line]) == 1


def test_answers_to_messages_sent_without_waiting_are_no_sign_of_a_stream_out_of_step():
    """
    Responses that match no request only count towards unmatched-limit when
    they answer nothing this MUX sent: answers to advices sent with
    C{send()} (no answer awaited) do not; a reconnect starts the count again.
    """
    from muxpool.interfaces import IReconnect

    @implementer(IReconnect)
    class Link(MemoryLink):
        def __init__(self):
            MemoryLink.__init__(self, "link")
            self.reasons = []

        def reconnect(self, why):
            self.reasons.append(why)

    clock = Clock()
    link = Link()
    mux = started(QMUX("m", link, clock, unmatchedLimit=3))
    mux.request({"t": "0200", "11": "000001", "41": "T1"}, 30)
    for stan in ("000101", "000102", "000103", "000104"):
        mux.send({"t": "0220", "11": stan, "41": "T1"})
        link.deliver({"t": "0230", "11": stan, "41": "T1", "39": "00"})
    assert link.reasons == []
    link.deliver({"t": "0210", "11": "900001", "41": "T1", "39": "00"})
    link.deliver({"t": "0210", "11": "900002", "41": "T1", "39": "00"})
    link.lose()
    link.ready.set(True)
    mux.request({"t": "0200", "11": "000002", "41": "T1"}, 30)
    link.deliver({"t": "0210", "11": "900003", "41": "T1", "39": "00"})
    assert link.reasons == []  # two before the reconnect, one after
    link.deliver({"t": "0210", "11": "900004", "41": "T1", "39": "00"})
    link.deliver({"t": "0210", "11": "900005", "41": "T1", "39": "00"})
    assert link.reasons == ["3 answers in a row matched no request of m"]
