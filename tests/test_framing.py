"""
Every jPOS framing: byte-exact against jPOS's captures, and robust to
whatever a peer sends.
"""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from muxpool.channel import ChannelSpec
from muxpool.iso import FRAMINGS, FramingError, LengthCodec, getFraming
from muxpool.iso.packagers import PackError, getPackager
from tests.conftest import interopLines
from tests.helpers import connectedProtocol
from tests.strategies import messages

CAPTURED = sorted(
    [
        "ASCIIChannel",
        "NACChannel",
        "PostChannel",
        "NCCChannel",
        "BCDChannel",
        "HEXChannel",
        "RawChannel",
        "BASE24TCPChannel",
        "CSChannel",
        "GICCChannel",
        "AmexChannel",
        "VAPChannel",
        "RBPChannel",
        "BASE24Channel",
        "GZIPChannel",
    ]
)

ISO87A = getPackager("ISO87A")


def specFor(vector, header=None):
    return ChannelSpec.fromConfig(vector["channel"], "ISO87A", header, vector.get("config") or {})


@pytest.mark.parametrize("channel", CAPTURED)
def test_send_matches_jpos(channel):
    """
    What we write for each captured message is what jPOS wrote: requests with
    the configured header, replies with the received header (swapped or not
    as that channel does).
    """
    for vector in interopLines(f"framing/{channel}.jsonl"):
        message = ISO87A.unpack(bytes.fromhex(vector["message_hex"]))
        if vector["direction"] == "request":
            spec = specFor(vector, vector["header"])
        else:
            spec = specFor(vector)
            if vector["header"]:
                message["h"] = vector["header"]
        assert spec.encode(message).hex().upper() == vector["wire_hex"], (
            vector["variant"],
            vector["direction"],
            vector["index"],
        )


@pytest.mark.parametrize("channel", CAPTURED)
def test_receive_matches_jpos(channel):
    """
    Feeding jPOS's wire bytes gives back the message and the header it carried.
    """
    for vector in interopLines(f"framing/{channel}.jsonl"):
        header = vector["header"] if vector["variant"] != "base1" else None
        spec = specFor(vector, header)
        protocol, transport, owner = connectedProtocol(spec)
        protocol.dataReceived(bytes.fromhex(vector["wire_hex"]))
        assert transport.connected and not transport.disconnecting
        [message] = owner.messages
        expected = ISO87A.unpack(bytes.fromhex(vector["message_hex"]))
        wireHeader = message.pop("h", None)
        assert message == expected
        before = vector["before_message_hex"] or ""
        if wireHeader:
            assert before.endswith(wireHeader)


def sample(spec):
    return spec.encode({"t": "0200", "3": "000000", "11": "000001", "41": "TERM0001"})


@pytest.fixture(params=sorted(FRAMINGS))
def spec(request):
    header = "6000120034" if request.param in ("NACChannel", "NCCChannel") else None
    return ChannelSpec.fromConfig(request.param, "ISO87A", header)


def test_round_trip(spec):
    protocol, transport, owner = connectedProtocol(spec)
    message = {"t": "0800", "7": "1126101010", "11": "000013", "70": "301"}
    protocol.sendMessage(message)
    peer, _, peerOwner = connectedProtocol(spec)
    peer.dataReceived(transport.value())
    [received] = peerOwner.messages
    received.pop("h", None)
    received.pop("p")
    received.pop("1")
    assert received == message


def test_one_byte_at_a_time(spec):
    data = sample(spec) * 3
    protocol, transport, owner = connectedProtocol(spec)
    for i in range(len(data)):
        protocol.dataReceived(data[i : i + 1])
    assert len(owner.messages) == 3
    assert not transport.disconnecting


def test_frames_split_anywhere_between_two_chunks(spec):
    data = sample(spec) * 3
    for cut in range(len(data) + 1):
        protocol, transport, owner = connectedProtocol(spec)
        protocol.dataReceived(data[:cut])
        protocol.dataReceived(data[cut:])
        assert len(owner.messages) == 3, cut
        assert not transport.disconnecting


def test_several_frames_in_one_chunk_with_keepalives(spec):
    framing = spec.framing
    if framing.length is None:
        pytest.skip(f"{framing.name} has no length, so no keep-alive frame")
    data = sample(spec) + framing.keepAlive() + sample(spec) + framing.keepAlive() + sample(spec)
    protocol, transport, owner = connectedProtocol(spec)
    protocol.dataReceived(data)
    assert len(owner.messages) == 3
    assert protocol.counters["rx_keepalive"] == 2


def test_keepalive_can_be_written(spec):
    if spec.framing.length is None:
        pytest.skip(f"{spec.framing.name} has no length, so no keep-alive frame")
    protocol, transport, owner = connectedProtocol(spec)
    protocol.sendKeepAlive()
    written = transport.value()
    assert len(written) == spec.framing.prefixSize
    peer, peerTransport, peerOwner = connectedProtocol(spec)
    peer.dataReceived(written)
    assert peerOwner.messages == [] and not peerTransport.disconnecting


def test_oversized_length_closes_connection(spec):
    small = ChannelSpec(spec.framing, spec.packager, spec.header, maxPacketLength=20)
    protocol, transport, owner = connectedProtocol(small)
    protocol.dataReceived(sample(spec))
    assert transport.disconnecting
    assert owner.messages == []


def test_undecodable_frame_is_counted_and_connection_stays(spec):
    framing = spec.framing
    garbageBody = b"\xff" * 10
    bad = framing.frame(spec.header, garbageBody)
    protocol, transport, owner = connectedProtocol(spec)
    protocol.dataReceived(bad + sample(spec))
    assert protocol.counters["rx_bad"] == 1
    assert len(owner.messages) == 1
    assert not transport.disconnecting


@pytest.mark.parametrize(
    "codec,data",
    [
        (LengthCodec("ascii", 4), b"00x5"),
        (LengthCodec("bcd", 2), b"\x0a\x55"),
        (LengthCodec("hex", 4), b"00zz"),
    ],
)
def test_bad_length_prefix(codec, data):
    with pytest.raises(FramingError):
        codec.decode(data)


def test_garbage_length_closes_only_that_connection():
    spec = ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
    bad, badTransport, _ = connectedProtocol(spec)
    good, goodTransport, goodOwner = connectedProtocol(spec)
    bad.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    good.dataReceived(sample(spec))
    assert badTransport.disconnecting
    assert not goodTransport.disconnecting and len(goodOwner.messages) == 1


def test_length_digits_and_hex_wrap():
    assert getFraming("ASCIIChannel", 6).encodePrefix(55) == b"000055"
    assert getFraming("HEXChannel").encodePrefix(348) == b"015c"
    assert getFraming("NCCChannel").encodePrefix(10055) == b"\x00\x55"
    assert getFraming("org.jpos.iso.channel.NACChannel").name == "NACChannel"
    with pytest.raises(KeyError, match="NACChannel"):
        getFraming("FooChannel")


def test_base24_refuses_a_message_containing_etx():
    spec = ChannelSpec.fromConfig("BASE24Channel", "ISO87B")
    with pytest.raises(PackError, match="end byte 03"):
        spec.encode({"t": "0200", "3": "030303"})


def test_tpdu_swap_can_be_turned_off():
    spec = ChannelSpec.fromConfig("NACChannel", "ISO87A", None, {"tpdu-swap": "false"})
    data = spec.encode({"t": "0810", "h": "6000120034", "39": "00"})
    assert data[2:7].hex() == "6000120034"


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(FRAMINGS)), st.sampled_from(["ISO87A", "ISO87B"]), st.data())
def test_random_messages_round_trip(channel, packagerName, data):
    packager = getPackager(packagerName)
    spec = ChannelSpec.fromConfig(channel, packager)
    message = data.draw(messages(packager))
    packed = packager.pack(message)
    assume(channel != "BASE24Channel" or b"\x03" not in packed)  # ETX-delimited
    expected = packager.unpack(packed)
    protocol, transport, owner = connectedProtocol(spec)
    protocol.sendMessage(message)
    peer, _, peerOwner = connectedProtocol(spec)
    peer.dataReceived(transport.value())
    [received] = peerOwner.messages
    received.pop("h", None)
    assert received == expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(FRAMINGS)), st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_never_raise(channel, chunks):
    spec = ChannelSpec.fromConfig(channel, "ISO87B")
    protocol, transport, owner = connectedProtocol(spec)
    for chunk in chunks:
        protocol.dataReceived(chunk)
