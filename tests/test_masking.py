"""
Card data never reaches a log line.
"""

import pytest
from zope.interface import implementer

from muxpool.channel import ChannelSpec, IChannelOwner
from muxpool.iso import maskMessage
from tests.helpers import connectedProtocol
from tests.logcapture import capturedText

PAN = "4761739001010119"
TRACK2 = "4761739001010119D22122011758928889"
PIN = "0A1B2C3D4E5F6071"

CARD_MESSAGE = {
    "t": "0200",
    "2": PAN,
    "3": "000000",
    "4": "000000001000",
    "11": "000001",
    "14": "2212",
    "35": TRACK2.replace("D", "="),
    "41": "TERM0001",
    "52": PIN,
}


def test_mask_rules():
    text = maskMessage(CARD_MESSAGE, binaryFields={"52"})
    assert "476173******0119" in text
    assert "14=****" in text
    assert PAN not in text and "2212011758928889" not in text and PIN not in text
    assert "35=[hidden]" in text and "52=[hidden]" in text
    assert "41=TERM0001" in text


@implementer(IChannelOwner)
class ExplodingOwner:
    def channelConnected(self, protocol):
        pass

    def channelIdle(self, protocol):
        return True

    def channelUndecodable(self, protocol, why):
        pass

    def channelSecured(self, protocol):
        pass

    def channelLost(self, protocol, reason):
        pass

    def channelMessage(self, protocol, message):
        raise RuntimeError(f"handler bug on {message['35']}")


def test_logged_messages_hide_card_data():
    """
    A handler failure logs the message it failed on: masked.  An undecodable
    frame carrying the same data logs no content at all.
    """
    spec = ChannelSpec.fromConfig("NACChannel", "ISO87A")
    wire = spec.encode(CARD_MESSAGE)
    with capturedText() as lines:
        protocol, transport, _ = connectedProtocol(spec, owner=ExplodingOwner())
        protocol.dataReceived(wire)
        truncated = spec.framing.frame(b"", spec.packager.pack(CARD_MESSAGE)[:-4])
        protocol.dataReceived(truncated)
    text = "\n".join(lines)
    assert "RuntimeError at test_masking.py" in text and "undecodable" in text
    assert "handler bug" not in text  # an error's text may carry card data
    assert "476173******0119" in text
    for secret in (PAN, "=2212011758928889", "D2212011758928889", PIN):
        assert secret not in text
    assert not transport.disconnecting


@pytest.mark.parametrize("value", ["TERM\r0001", "TERM\n0001", "A\x1bB", "X\x00"])
def test_control_characters_in_a_value_are_escaped(value):
    """
    A value with a control character (a carriage return or a newline that
    would forge a log line) is shown escaped, as Python's repr.
    """
    shown = maskMessage({"t": "0200", "41": value})
    assert repr(value) in shown
    assert not any(ch in shown for ch in "\r\n\x1b\x00")
