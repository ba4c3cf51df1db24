"""
Microseconds per pack, unpack, frame and unframe for ISO87A and ISO87B, in
one run: the compiled codec (what packagers use), muxpool's generic path
(pyiso8583's encode/decode with muxpool's padding and checks around them),
and bare pyiso8583 on the same spec and message.

    python benchmarks/codec.py [--n 10000]

Each figure is the best of three runs of n calls.  "frame" is pack plus
framing (the bytes a channel writes), "unframe" is feeding those bytes to a
channel protocol (framing, unpack, header, delivery to its owner).
"""

import argparse
import timeit

import iso8583
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from muxpool.channel import ChannelSpec, IChannelOwner, ISOChannelProtocol
from muxpool.interfaces import IPackager
from muxpool.iso.packagers import getPackager

MESSAGE = {
    "t": "0200",
    "2": "4761739001010119",
    "3": "000000",
    "4": "000000001000",
    "7": "1126101010",
    "11": "000001",
    "12": "101010",
    "13": "1126",
    "14": "2212",
    "22": "051",
    "25": "00",
    "35": "4761739001010119=22122011758928889",
    "37": "123456789012",
    "41": "TERM0001",
    "42": "MERCHANT0000001",
    "49": "840",
    "52": "0A1B2C3D4E5F6071",
    "90": "0" * 42,
}


@implementer(IChannelOwner)
class Sink:
    def channelConnected(self, protocol):
        pass

    def channelMessage(self, protocol, message):
        pass

    def channelLost(self, protocol, reason):
        pass


@implementer(IPackager)
class GenericPath:
    """
    A packager's generic path, as a packager of its own.
    """

    def __init__(self, packager):
        self.name = packager.name
        self.binaryFields = packager.binaryFields
        self.pack = packager.packGeneric
        self.unpack = packager.unpackGeneric


def micro(fn, n):
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def framingRows(packager, channel, header, message, n):
    """
    Microseconds to frame C{message} and to unframe the result.
    """
    spec = ChannelSpec.fromConfig(channel, packager, header)
    wire = spec.encode(message)
    protocol = ISOChannelProtocol(spec, Sink(), Clock())
    protocol.makeConnection(StringTransport())
    return micro(lambda: spec.encode(message), n), micro(lambda: protocol.dataReceived(wire), n)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    n = parser.parse_args().n
    print(f"{'packager':8} {'operation':34} {'compiled':>9} {'generic':>9} {'pyiso8583':>9}")
    for name, channel, header in (
        ("ISO87A", "ASCIIChannel", None),
        ("ISO87B", "NACChannel", "6000120034"),
    ):
        packager = getPackager(name)
        message = dict(MESSAGE)
        if name == "ISO87B":
            message["35"] = message["35"].replace("=", "D")
        data = packager.pack(message)
        assert data == packager.packGeneric(message)
        # What pyiso8583 itself is given: the values after muxpool's padding.
        bare = {k: packager.toWire[k](v) if k in packager.toWire else v for k, v in message.items()}
        spec = packager.spec
        rows = [
            (
                "pack",
                micro(lambda: packager.pack(message), n),
                micro(lambda: packager.packGeneric(message), n),
                micro(lambda: iso8583.encode(dict(bare), spec), n),
            ),
            (
                "unpack",
                micro(lambda: packager.unpack(data), n),
                micro(lambda: packager.unpackGeneric(data), n),
                micro(lambda: iso8583.decode(data, spec), n),
            ),
        ]
        compiledFrame = framingRows(packager, channel, header, message, n)
        genericFrame = framingRows(GenericPath(packager), channel, header, message, n)
        where = f"{channel}{' + header' if header else ''}"
        rows.append((f"frame (pack + {where})", compiledFrame[0], genericFrame[0], None))
        rows.append(("unframe (feed + unpack)", compiledFrame[1], genericFrame[1], None))
        for label, *figures in rows:
            cells = " ".join(f"{f:9.1f}" if f is not None else f"{'-':>9}" for f in figures)
            print(f"{name:8} {label:34} {cells}")


if __name__ == "__main__":
    main()
