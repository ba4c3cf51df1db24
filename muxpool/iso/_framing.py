"""
jPOS channel framings as data: how a message is delimited on a TCP stream.

Every jPOS channel class differs from the others only in its length prefix
(how the number is written, how wide, what it counts, constant bytes around
it), an optional trailer, and what it does with a header when it sends a
reply.  L{FRAMINGS} holds one L{Framing} per channel class; the length logic
is written once, in L{LengthCodec}.  No ISO fields here.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Dict, Optional, Tuple, Union

#: What L{Framing.nextFrame} gives as the frame of a keep-alive.
KEEPALIVE = None

DEFAULT_MAX_PACKET_LENGTH = 100000


class FramingError(ValueError):
    """
    The bytes on the wire cannot be a frame of this framing: a length prefix
    that is not a length, or one above the maximum.  The connection that
    produced it cannot be resynchronised and must be closed.
    """


@dataclass(frozen=True)
class LengthCodec:
    """
    One way of writing a length: C{"bin"} (big-endian binary), C{"bcd"},
    C{"ascii"} (decimal digits) or C{"hex"} (lower-case hex digits), in
    C{width} bytes, modulo C{modulo} if jPOS wraps it.
    """

    kind: str
    width: int
    modulo: Optional[int] = None

    @cached_property
    def maximum(self) -> int:
        if self.kind == "bin":
            return (1 << (8 * self.width)) - 1
        if self.kind == "bcd":
            return 10 ** (2 * self.width) - 1
        if self.kind == "ascii":
            return 10**self.width - 1
        return 16**self.width - 1

    def encode(self, n: int) -> bytes:
        if self.modulo:
            n %= self.modulo
        if n < 0 or n > self.maximum:
            raise FramingError(
                f"length {n} does not fit a {self.width}-byte {self.kind} length prefix"
            )
        if self.kind == "bin":
            return n.to_bytes(self.width, "big")
        if self.kind == "bcd":
            return bytes.fromhex("%0*d" % (2 * self.width, n))
        if self.kind == "ascii":
            return b"%0*d" % (self.width, n)
        return b"%0*x" % (self.width, n)

    def decode(self, data: Union[bytes, bytearray]) -> int:
        """
        The length written in C{data} (bytes or a bytearray slice).
        """
        if self.kind == "bin":
            return int.from_bytes(data, "big")
        if self.kind == "bcd":
            text = data.hex()
            if not text.isdigit():
                raise FramingError(f"length prefix {text!r} is not BCD")
            return int(text)
        if self.kind == "ascii":
            if not data.isdigit():
                raise FramingError(f"length prefix {_show(data)} is not decimal digits")
            return int(data)
        try:
            return int(data, 16)
        except ValueError:
            raise FramingError(f"length prefix {_show(data)} is not hex digits") from None


def _show(data: Union[bytes, bytearray]) -> str:
    # A length prefix is a few bytes of framing, not card data; show it in hex.
    return "0x" + data.hex()


def _noSwap(header: bytes) -> bytes:
    return header


def _swapTPDU(header: bytes) -> bytes:
    # TPDU: 1 byte id, 2 bytes destination, 2 bytes source; a reply swaps them.
    if len(header) == 5:
        return header[:1] + header[3:5] + header[1:3]
    return header


def _swapBase1(header: bytes) -> bytes:
    # VISA BASE I header: bytes 5-7 destination, 8-10 source.
    if len(header) >= 11:
        return header[:5] + header[8:11] + header[5:8] + header[11:]
    return header


@dataclass(frozen=True)
class Framing:
    """
    One jPOS channel's wire format.

    @ivar name: the jPOS class name, e.g. C{"NACChannel"}.
    @ivar length: the length codec, or C{None} for a framing with no length.
    @ivar before: constant bytes written before the length (read and ignored).
    @ivar after: constant bytes written after the length (read and ignored).
    @ivar adjust: added to header+body length to give the written value
        (1 for BASE24TCP's trailer, 2 for Amex's length counting itself).
    @ivar trailer: bytes after the message.
    @ivar replyHeader: what a header received with a message becomes when
        that message (or its response) is sent back.
    @ivar swapOption: the channel property that turns the swap off, if any.
    @ivar headerLength: a function of the frame giving the header length, for
        framings whose header carries its own length (VAP); else C{None}
        and the configured header's length is used.
    """

    name: str
    length: Optional[LengthCodec]
    before: bytes = b""
    after: bytes = b""
    adjust: int = 0
    trailer: bytes = b""
    replyHeader: Callable[[bytes], bytes] = _noSwap
    swapOption: Optional[str] = None
    headerLength: Optional[Callable[[bytes], int]] = None
    base1: bool = False

    @cached_property
    def prefixSize(self) -> int:
        return len(self.before) + (self.length.width if self.length else 0) + len(self.after)

    def encodePrefix(self, size: int) -> bytes:
        """
        The bytes before the header: C{size} is header + body length.
        """
        assert self.length is not None, f"{self.name} has no length prefix"
        return self.before + self.length.encode(size + self.adjust if size else 0) + self.after

    def decodePrefix(self, buffer: Union[bytes, bytearray], offset: int = 0) -> int:
        """
        The header + body length announced by the prefix at C{offset} in
        C{buffer} (0: a keep-alive), read from the length's own bytes.
        """
        assert self.length is not None, f"{self.name} has no length prefix"
        start = offset + len(self.before)
        n = self.length.decode(buffer[start : start + self.length.width])
        if n == 0:
            return 0
        size = n - self.adjust
        if size <= 0:
            raise FramingError(f"length prefix {n} is too small for {self.name}")
        return size

    def keepAlive(self) -> bytes:
        """
        A zero-length frame (jPOS keep-alive).
        """
        return self.encodePrefix(0)

    def frame(self, header: bytes, body: bytes) -> bytes:
        """
        Frame one packed message with its header.
        """
        if self.base1:
            header = base1Header(header, len(body))
        return b"".join((self.encodePrefix(len(header) + len(body)), header, body, self.trailer))

    def nextFrame(
        self, buffer: Union[bytes, bytearray], offset: int, maxLength: int
    ) -> Optional[Tuple[Optional[bytes], int]]:
        """
        The next frame in C{buffer} from C{offset}: C{(header + message,
        offset after it)}, C{(KEEPALIVE, offset after it)} for a zero-length
        frame, or None until more bytes arrive.  The frame is one slice of
        C{buffer}: given bytes, its only copy.

        @raise FramingError: the bytes cannot be a frame; close the connection.
        """
        start = offset + self.prefixSize
        if len(buffer) < start:
            return None
        size = self.decodePrefix(buffer, offset)
        if size > maxLength:
            raise FramingError(f"length {size} is above max-packet-length {maxLength}")
        if size == 0:
            return KEEPALIVE, start
        return self._readBody(buffer, start, size)

    def _readBody(
        self, buffer: Union[bytes, bytearray], start: int, size: int
    ) -> Optional[Tuple[bytes, int]]:
        """
        The C{size} bytes announced by the prefix, and the trailer after them.
        """
        end = start + size
        if len(buffer) < end + len(self.trailer):
            return None
        return bytes(buffer[start:end]), end + len(self.trailer)


@dataclass(frozen=True)
class DelimitedFraming(Framing):
    """
    No length at all: the message ends at the trailer byte (jPOS's
    BASE24Channel, ETX).  A message containing that byte cannot be framed,
    and there is no keep-alive frame.
    """

    def frame(self, header: bytes, body: bytes) -> bytes:
        if self.trailer in header + body:
            raise FramingError(
                f"{self.name}: the message contains the end byte {self.trailer.hex()}"
            )
        return header + body + self.trailer

    def keepAlive(self) -> bytes:
        return b""

    def nextFrame(
        self, buffer: Union[bytes, bytearray], offset: int, maxLength: int
    ) -> Optional[Tuple[Optional[bytes], int]]:
        end = buffer.find(self.trailer, offset)
        if end < 0:
            if len(buffer) - offset > maxLength:
                raise FramingError(f"no end byte within max-packet-length {maxLength}")
            return None
        if end - offset > maxLength:
            raise FramingError(f"message above max-packet-length {maxLength}")
        return bytes(buffer[offset:end]), end + len(self.trailer)


#: The gzip member header Java's GZIPOutputStream writes (mtime 0, OS 255).
_JAVA_GZIP_HEADER = bytes.fromhex("1f8b08000000000000ff")


@dataclass(frozen=True)
class GzipFraming(Framing):
    """
    jPOS's GZIPChannel: a 2-byte length of the uncompressed message, then
    the message as a gzip member, byte-exact with Java's default Deflater.
    """

    def frame(self, header: bytes, body: bytes) -> bytes:
        data = header + body
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        member = (
            _JAVA_GZIP_HEADER
            + compressor.compress(data)
            + compressor.flush()
            + zlib.crc32(data).to_bytes(4, "little")
            + len(data).to_bytes(4, "little")
        )
        return self.encodePrefix(len(data)) + member

    def _readBody(
        self, buffer: Union[bytes, bytearray], start: int, size: int
    ) -> Optional[Tuple[bytes, int]]:
        # The length counts uncompressed bytes: the member ends where gzip says.
        decompressor = zlib.decompressobj(31)
        try:
            with memoryview(buffer) as view, view[start:] as member:
                data = decompressor.decompress(member, size + 1)
        except zlib.error as e:
            raise FramingError(f"body is not gzip: {e}") from None
        if not decompressor.eof:
            if len(data) > size:
                raise FramingError(f"gzip body is longer than its length {size}")
            return None
        if len(data) != size:
            raise FramingError(f"gzip body is {len(data)} bytes, its length says {size}")
        return data, len(buffer) - len(decompressor.unused_data)


BASE1_HEADER_LENGTH = 22


def base1Header(header: bytes, bodyLength: int) -> bytes:
    """
    Put the total length (header + body) into a VISA BASE I header.
    """
    if len(header) < 5:
        return header
    total = len(header) + bodyLength
    return header[:3] + total.to_bytes(2, "big") + header[5:]


def newBase1Header(source: str, destination: str) -> bytes:
    """
    A fresh BASE I header, as jPOS's VAPChannel builds it from C{srcid} and
    C{dstid} (length filled in when framed).
    """
    return (
        bytes([BASE1_HEADER_LENGTH, 0x01, 0x02, 0, 0])
        + bytes.fromhex(destination.rjust(6, "0"))
        + bytes.fromhex(source.rjust(6, "0"))
        + bytes(BASE1_HEADER_LENGTH - 11)
    )


_bin2 = LengthCodec("bin", 2)

#: Every framing, by jPOS class name.
FRAMINGS: Dict[str, Framing] = {
    f.name: f
    for f in [
        Framing("ASCIIChannel", LengthCodec("ascii", 4)),
        Framing("NACChannel", _bin2, replyHeader=_swapTPDU, swapOption="tpdu-swap"),
        Framing("PostChannel", _bin2),
        Framing(
            "NCCChannel",
            LengthCodec("bcd", 2, modulo=10000),
            replyHeader=_swapTPDU,
            swapOption="tpdu-swap",
        ),
        Framing("BCDChannel", LengthCodec("bcd", 2), replyHeader=_swapTPDU),
        Framing("HEXChannel", LengthCodec("hex", 4, modulo=0xFFFF)),
        Framing("RawChannel", LengthCodec("bin", 4)),
        Framing("BASE24TCPChannel", _bin2, adjust=1, trailer=b"\x03"),
        Framing("CSChannel", _bin2, after=b"\x00\x00"),
        Framing("GICCChannel", _bin2, before=b"\x00\x00"),
        Framing("AmexChannel", _bin2, adjust=2),
        Framing("CMFChannel", LengthCodec("bin", 3)),
        Framing("RBPChannel", _bin2, before=b"\xd0\x4a", after=b"\x00\x00"),
        Framing(
            "VAPChannel",
            _bin2,
            after=b"\x00\x00",
            replyHeader=_swapBase1,
            headerLength=lambda frame: frame[0] if frame else 0,
            base1=True,
        ),
        DelimitedFraming("BASE24Channel", None, trailer=b"\x03"),
        GzipFraming("GZIPChannel", _bin2),
    ]
}

_JPOS_PACKAGE = "org.jpos.iso.channel."


def getFraming(name: str, lengthDigits: Union[int, str, None] = None) -> Framing:
    """
    Find a framing by jPOS class name (with or without the
    C{org.jpos.iso.channel.} package), or a short name (C{"nac"}).

    @param lengthDigits: ASCIIChannel's C{length-digits} property.
    @raise KeyError: listing the known names.
    """
    short = name[len(_JPOS_PACKAGE) :] if name.startswith(_JPOS_PACKAGE) else name
    framing = FRAMINGS.get(short)
    if framing is None:
        lowered = {k.lower().replace("channel", ""): v for k, v in FRAMINGS.items()}
        framing = lowered.get(short.lower().replace("channel", ""))
    if framing is None:
        raise KeyError(f"unknown channel class {name!r} (known: {', '.join(sorted(FRAMINGS))})")
    if lengthDigits and framing.length and framing.length.kind == "ascii":
        framing = Framing(framing.name, LengthCodec("ascii", int(lengthDigits)))
    return framing
