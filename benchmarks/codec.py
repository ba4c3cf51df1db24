"""
Microseconds per pack, unpack, frame and unframe for ISO87A and ISO87B,
beside bare pyiso8583 on the same message, in one run.

    python benchmarks/codec.py [--n 20000]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

import argparse
import timeit

import iso8583
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.interfaces import IChannelOwner
from muxpool.packagers import getPackager

MESSAGE = {
    "t": "0200", "2": "4761739001010119", "3": "000000", "4": "000000001000",
    "7": "1126101010", "11": "000001", "12": "101010", "13": "1126", "14": "2212",
    "22": "051", "25": "00", "35": "4761739001010119=22122011758928889",
    "37": "123456789012", "41": "TERM0001", "42": "MERCHANT0000001",
    "49": "840", "52": "0A1B2C3D4E5F6071", "90": "0" * 42,
}


@implementer(IChannelOwner)
class Sink:
    def channelConnected(self, protocol):
        pass

    def channelMessage(self, protocol, message):
        pass

    def channelLost(self, protocol, reason):
        pass


def micro(fn, n):
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    n = parser.parse_args().n
    print(f"{'packager':8} {'operation':24} {'us/op':>8}")
    for name, channel in (("ISO87A", "ASCIIChannel"), ("ISO87B", "NACChannel")):
        packager = getPackager(name)
        message = dict(MESSAGE)
        if name == "ISO87B":
            message["35"] = message["35"].replace("=", "D")
        data = packager.pack(message)
        spec = ChannelSpec.fromConfig(channel, packager)
        frame = spec.encode(message)
        protocol = ISOChannelProtocol(spec, Sink(), Clock())
        protocol.makeConnection(StringTransport())
        bareDoc = packager.unpack(data)
        rows = [
            ("pack (muxpool)", lambda: packager.pack(message)),
            ("pack (bare pyiso8583)", lambda: iso8583.encode(dict(bareDoc), packager.spec)),
            ("unpack (muxpool)", lambda: packager.unpack(data)),
            ("unpack (bare pyiso8583)", lambda: iso8583.decode(data, packager.spec)),
            ("frame (pack+frame)", lambda: spec.encode(message)),
            ("unframe (feed+unpack)", lambda: protocol.dataReceived(frame)),
        ]
        for label, fn in rows:
            print(f"{name:8} {label:24} {micro(fn, n):8.1f}")


if __name__ == "__main__":
    main()
