"""
QMUX: keys as jPOS builds them, the pending table, and the three outcomes.
"""

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from muxpool.errors import (
    DuplicateKey,
    EncodeFailed,
    LinkLost,
    LinkNotReady,
    MissingKey,
    NotSent,
    OutcomeUnknown,
    RequestTimeout,
)
from muxpool.interfaces import IMUX, ISource
from muxpool.mux import KeyBuilder, QMUX
from muxpool.messages import parseFieldList
from tests.helpers import FakeLink, answer


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
    link = FakeLink()
    mux = QMUX("test-mux", link, clock, **kwargs)
    return mux, link, clock


# -- keys ------------------------------------------------------------------

KEY_CASES = [
    # (message, key fields, overrides, mapping, expected key); as in jPOS the
    # mapping covers the first three MTI digits, so 0400 and 0401 agree.
    ({"t": "0200", "11": "000001", "41": "TERM0001"}, None, None, None,
     "020.00000000TERM0001.000001"),
    ({"t": "0210", "11": "000001", "41": "TERM0001"}, None, None, None,
     "020.00000000TERM0001.000001"),
    ({"t": "0800", "11": "1"}, None, None, None, "080.000001"),
    ({"t": "0810", "11": "  1  "}, None, None, None, "080.000001"),
    ({"t": "0430", "11": "42", "41": " T1 "}, None, None, None,
     "042.00000000000000T1.000042"),
    ({"t": "2100", "11": "7"}, None, None, None, "210.000000000007"),
    ({"t": "0401", "11": "1"}, None, None, None, "040.000001"),
    ({"t": "0200", "11": "000001", "37": "RRN000000001"}, ("37",), None, None,
     "020.RRN000000001"),
    ({"t": "0800", "11": "000001", "70": "301"}, None, {"08": ("70", "11")}, None,
     "080.301.000001"),
    ({"t": "0200", "3": "310000", "11": "9", "41": "T"}, None,
     {"02:310000": ("11",), "02": ("41",)}, None, "020.000009"),
    ({"t": "0200", "3": "000000", "11": "9", "41": "T"}, None,
     {"02:310000": ("11",), "02": ("41",)}, None, "020.000000000000000T"),
    ({"t": "0210", "11": "1"}, None, None, ("0123456789", "0123456789", "0123456789"),
     "021.000001"),
    # a 3-digit MTI is zero-padded for mapping, but (as in jPOS) the raw
    # MTI starting with 2 asks for a 12-digit STAN
    ({"t": "210", "11": "1"}, None, None, None, "020.000000000001"),
]


@pytest.mark.parametrize("message,fields,overrides,mapping,expected", KEY_CASES)
def test_key_like_jpos(message, fields, overrides, mapping, expected):
    builder = KeyBuilder(fields or ("41", "11"), overrides, mapping)
    assert builder.key(message) == expected


def test_parse_field_list():
    assert parseFieldList("41, 11") == ("41", "11")
    assert parseFieldList("41 11,37") == ("41", "11", "37")


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
    link.deliver(answer(request(), **{"39": "91"}))
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
    from muxpool.channel import ChannelSpec
    from muxpool.errors import EncodeFailed
    from muxpool.link import LinkBase
    from tests.helpers import connectedProtocol
    from tests.logcapture import capturedText

    from zope.interface import implementer

    from muxpool.interfaces import IPackager

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
    mux = QMUX("m", link, Clock())
    with capturedText() as lines:
        results = outcome(mux.request(request(), 5))
    assert results[0].check(EncodeFailed)
    assert "KeyError" in str(results[0].value)
    assert transport.value() == b"" and mux.pendingCount() == 0
    assert "4761739001010119" not in "\n".join(lines) + str(results[0].value)
