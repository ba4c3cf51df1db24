"""
Forward and Responder, and the listener chain.
"""

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from muxpool import Readiness
from muxpool.channel import ChannelSpec
from muxpool.errors import LinkLost, NoMUXAvailable
from muxpool.interfaces import IMUX, IRequestListener
from muxpool.listeners import Forward, ListenerFailed, Responder, offer
from muxpool.registry import Registry
from muxpool.testing import MemoryLink
from tests.logcapture import capturedText

REQUEST = {
    "t": "0200",
    "h": "6000120034",
    "2": "4761739001010119",
    "3": "000000",
    "4": "000000001000",
    "11": "000042",
    "41": "TERM0001",
    "p": "X",
}


@implementer(IMUX)
class ScriptedMUX:
    name = "scripted"

    def __init__(self, result):
        self.result = result
        self.requests = []
        self.ready = Readiness(True)

    def request(self, message, timeout):
        self.requests.append((message, timeout))
        return self.result

    def send(self, message):
        pass

    def isConnected(self):
        return True

    def pendingCount(self):
        return 0


def test_interfaces():
    assert verifyObject(IRequestListener, Forward("x"))
    assert verifyObject(IRequestListener, Responder())


def test_responder_answers_with_key_amount_and_header():
    source = MemoryLink()
    Responder(fixed={"38": "ABC123"}).process(source, dict(REQUEST))
    [answer] = source.sent
    assert answer["t"] == "0210" and answer["39"] == "00" and answer["38"] == "ABC123"
    assert answer["11"] == "000042" and answer["41"] == "TERM0001" and answer["4"] == "000000001000"
    assert answer["h"] == "6000120034"


def test_responder_delay_and_properties():
    clock = Clock()
    source = MemoryLink()
    responder = Responder.fromProperties(
        {"result-code": "05", "delay": "250", "field.44": "B"}, clock
    )
    responder.process(source, dict(REQUEST))
    assert source.sent == []
    clock.advance(0.25)
    assert source.sent[0]["39"] == "05" and source.sent[0]["44"] == "B"


def test_forward_answers_with_response_and_original_header():
    mux = ScriptedMUX(
        succeed({"t": "0210", "11": "000042", "41": "TERM0001", "39": "00", "h": "FFFF"})
    )
    source = MemoryLink()
    Forward(mux, timeout=7).process(source, dict(REQUEST))
    sent, timeout = mux.requests[0]
    assert "h" not in sent and "p" not in sent and timeout == 7
    assert source.sent[0]["39"] == "00" and source.sent[0]["h"] == "6000120034"


def test_forward_not_sent_answers_91():
    source = MemoryLink()
    Forward(ScriptedMUX(fail(NoMUXAvailable("none"))), 1).process(source, dict(REQUEST))
    assert source.sent[0]["t"] == "0210" and source.sent[0]["39"] == "91"


def test_forward_outcome_unknown_answers_68_and_logs_masked():
    source = MemoryLink()
    with capturedText() as lines:
        Forward(ScriptedMUX(fail(LinkLost("gone"))), 1).process(source, dict(REQUEST))
    assert source.sent[0]["39"] == "68"
    text = "\n".join(lines)
    assert "reversal" in text and "476173******0119" in text and REQUEST["2"] not in text


def test_forward_configured_unknown_code_and_registry_lookup():
    registry = Registry()
    registry.register("core", ScriptedMUX(fail(LinkLost("gone"))))
    source = MemoryLink()
    forward = Forward.fromProperties(
        {"mux": "core", "timeout": "1500", "unknown-code": "06"}, registry.getMUX
    )
    assert forward.timeout == 1.5
    forward.process(source, dict(REQUEST))
    assert source.sent[0]["39"] == "06"


def test_forward_unknown_mux_answers_91():
    source = MemoryLink()
    Forward("nope", 1, Registry().getMUX).process(source, dict(REQUEST))
    assert source.sent[0]["39"] == "91"


def test_many_in_flight_per_source():
    pending = [Deferred() for _ in range(3)]
    mux = ScriptedMUX(None)
    results = iter(pending)
    mux.request = lambda message, timeout: next(results)
    source = MemoryLink()
    forward = Forward(mux, 1)
    for stan in ("1", "2", "3"):
        forward.process(source, dict(REQUEST, **{"11": stan}))
    for d, stan in zip(reversed(pending), ("3", "2", "1")):
        d.callback({"t": "0210", "11": stan, "39": "00"})
    assert [m["11"] for m in source.sent] == ["3", "2", "1"]


def test_a_failing_listener_is_named_never_its_error_text():
    class Boom:
        def process(self, source, message):
            raise RuntimeError(f"bug with {message['2']}")

    responder = Responder()
    with pytest.raises(ListenerFailed) as info:
        offer([Boom(), responder], MemoryLink(), REQUEST)
    text = str(info.value)
    assert "tests.test_listeners" in text and "Boom" in text and "test_listeners.py" in text
    assert "RuntimeError at test_listeners.py:" in text
    assert REQUEST["2"] not in text and responder.answered == 0


def test_forward_answers_even_when_the_mux_raises():
    class Raising(ScriptedMUX):
        def request(self, message, timeout):
            raise RuntimeError("bug in a custom MUX")

    source = MemoryLink()
    with capturedText() as lines:
        Forward(Raising(None), 1).process(source, dict(REQUEST))
    # it was asked to send: the issuer may have it, so it is answered as an
    # outcome unknown (a reversal of nothing is harmless; a missed one is not)
    assert source.sent[0]["39"] == "68"
    assert "RuntimeError at test_listeners.py" in "\n".join(lines)


def test_forward_answers_68_when_the_mux_answers_something_not_a_message():
    # A MUX in user code that fires with None still gives the acquirer an
    # answer (68), so no request is left in flight; the TypeError is logged.
    source = MemoryLink()
    with capturedText() as lines:
        Forward(ScriptedMUX(succeed(None)), 1).process(source, dict(REQUEST))
    assert source.sent[0]["39"] == "68"
    assert "failed with TypeError" in "\n".join(lines)


CARD_REQUEST = dict(
    REQUEST,
    **{
        "35": "4761739001010119=22122011758928889",
        "45": "B4761739001010119^CARDHOLDER/A^2212201",
        "52": "0A1B2C3D4E5F6071",
        "55": "9F2608AABBCCDDEEFF0011",
        "36": "011234567890",
        "37": "123456789012",
        "32": "12345",
    },
)


def test_a_forward_decline_carries_no_card_data():
    """
    Forward's own declines copy back only the key and reference fields:
    never the PAN, tracks, PIN block or ICC data.
    """
    for result, code in ((fail(NoMUXAvailable("none")), "91"), (fail(LinkLost("gone")), "68")):
        source = MemoryLink()
        Forward(ScriptedMUX(result), 1).process(source, dict(CARD_REQUEST))
        [answer] = source.sent
        assert answer["39"] == code and answer["t"] == "0210"
        for hidden in ("2", "35", "36", "45", "52", "55"):
            assert hidden not in answer
        assert {k: answer[k] for k in ("11", "41", "37", "32", "h")} == {
            k: CARD_REQUEST[k] for k in ("11", "41", "37", "32", "h")
        }


def test_a_decline_to_a_bcd_acquirer_keeps_its_key():
    """
    On an ISO87B session, STAN, amount and processing code are BCD
    digits, not binary: a decline carries them, so the acquirer can match
    it (only raw binary fields, as the PIN block, are never copied).
    """
    source = MemoryLink()
    source.spec = ChannelSpec.fromConfig("NACChannel", "ISO87B")
    assert source.spec.packager.binaryFields == {"52", "64", "96", "128"}
    Forward(ScriptedMUX(fail(NoMUXAvailable("none"))), 1).process(source, dict(CARD_REQUEST))
    [answer] = source.sent
    assert {k: answer[k] for k in ("3", "4", "11", "41")} == {
        k: CARD_REQUEST[k] for k in ("3", "4", "11", "41")
    }
    assert "52" not in answer and "2" not in answer


def test_decline_fields_are_configurable_but_hidden_ones_never_echo():
    source = MemoryLink()
    forward = Forward.fromProperties(
        {"mux": "x", "decline-fields": "11 41 2 35 52"}, Registry().getMUX
    )
    forward.process(source, dict(CARD_REQUEST))
    assert source.sent[0] == {
        "t": "0210",
        "39": "91",
        "11": "000042",
        "41": "TERM0001",
        "2": CARD_REQUEST["2"],
    }


def test_a_persistent_fault_is_logged_at_a_bounded_rate():
    """
    A Forward naming a missing MUX logs at a bounded rate, not once per
    request: one line, then a count of those left out.
    """
    source = MemoryLink()
    clock = Clock()
    forward = Forward("missing", 1, Registry().getMUX, clock=clock)
    with capturedText() as lines:
        for i in range(500):
            forward.process(source, dict(REQUEST, **{"11": "%06d" % i}))
            clock.advance(0.01)  # 5 s of requests
        clock.advance(10)
        forward.process(source, dict(REQUEST))
    assert len(source.sent) == 501
    found = [line.split("\n")[0] for line in lines if "no such MUX" in line]
    assert len(found) == 2 and "(499 more like this in the last 10s)" in found[1]


@pytest.mark.parametrize("mti", ["0210", "0810", "02D0", "", "020"])
def test_forward_takes_requests_only(mti):
    """
    Forward leaves what is not a request (a response, or an MTI that is not
    four digits) to the next listener: nothing is sent, nothing answered.
    """
    from twisted.internet.task import Clock

    from muxpool.mux import QMUX
    from muxpool.testing import MemoryIssuer, MemoryLink

    clock = Clock()
    upstream = MemoryLink("issuer-channel")
    issuer = MemoryIssuer(upstream, clock)
    mux = QMUX("m", upstream, clock)
    mux.startService()
    acquirer = MemoryLink("acquirer")
    handled = Forward(mux, timeout=5).process(acquirer, {"t": mti, "11": "000001", "41": "T1"})
    assert handled is False and issuer.requests == [] and acquirer.sent == []
