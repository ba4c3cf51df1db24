"""
The channel protocol: a framing, a packager and a header on one connection.

L{ChannelSpec} is a channel's configuration (jPOS's C{<channel class
packager header>} with its properties); L{ISOChannelProtocol} is a Twisted
protocol that turns the byte stream into message dicts and back, and reports
them to its owner (an L{IChannelOwner}).  Bad input never escapes
C{dataReceived}: a bad length prefix closes that connection, an undecodable
frame is logged (masked) and counted, and the connection stays up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from muxpool.framing import (
    DEFAULT_MAX_PACKET_LENGTH,
    KEEPALIVE,
    Framing,
    FramingError,
    getFraming,
    newBase1Header,
)
from muxpool.interfaces import IChannelOwner, IPackager
from muxpool.masking import maskMessage
from muxpool.packagers import PackError, UnpackError, getPackager

HEADER_KEY = "h"

_TRUE = ("true", "yes", "1", "on")


def _flag(value, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


@dataclass(frozen=True)
class ChannelSpec:
    """
    How to speak on one connection: framing, packager, header and limits.

    @ivar header: bytes sent before each message that carries no header of
        its own (jPOS's C{header} attribute, given in hex).
    @ivar swapHeader: whether a received header is swapped when sent back
        (jPOS's C{tpdu-swap}, only for the framings that have it).
    """

    framing: Framing
    packager: IPackager
    header: bytes = b""
    maxPacketLength: int = DEFAULT_MAX_PACKET_LENGTH
    swapHeader: bool = True
    properties: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def fromConfig(
        cls,
        channelClass: str = "ASCIIChannel",
        packager: str = "ISO87A",
        header: Optional[str] = None,
        properties: Optional[Mapping[str, str]] = None,
    ) -> "ChannelSpec":
        """
        Build from jPOS-style names and properties (C{max-packet-length},
        C{packager-config}, C{length-digits}, C{tpdu-swap}, VAP's C{srcid} and
        C{dstid}).

        @raise ValueError: naming the bad value.
        """
        props = dict(properties or {})
        framing = getFraming(channelClass, props.get("length-digits"))
        pk = packager if IPackager.providedBy(packager) else getPackager(
            packager, props.get("packager-config")
        )
        if header:
            try:
                headerBytes = bytes.fromhex(header)
            except ValueError:
                raise ValueError(f"channel header {header!r} is not hex") from None
        elif framing.base1:
            headerBytes = newBase1Header(props.get("srcid", "0"), props.get("dstid", "0"))
        else:
            headerBytes = b""
        try:
            maxLength = int(props.get("max-packet-length", DEFAULT_MAX_PACKET_LENGTH))
        except ValueError:
            raise ValueError(
                f"max-packet-length {props['max-packet-length']!r} is not a number"
            ) from None
        swap = _flag(props.get(framing.swapOption), True) if framing.swapOption else True
        return cls(framing, pk, headerBytes, maxLength, swap, props)

    def headerFor(self, message: Mapping[str, str]) -> bytes:
        """
        The header to send with C{message}: the one it arrived with (swapped
        as the framing does for replies), else the configured one.
        """
        received = message.get(HEADER_KEY)
        if received:
            raw = bytes.fromhex(received)
            return self.framing.replyHeader(raw) if self.swapHeader else raw
        return self.header

    def encode(self, message: Mapping[str, str]) -> bytes:
        """
        One message, framed for the wire.

        @raise PackError: if the message cannot be packed or framed.
        """
        try:
            header = self.headerFor(message)
        except ValueError:
            raise PackError(HEADER_KEY, "header is not hex") from None
        try:
            body = self.packager.pack(message)
        except PackError:
            raise
        except Exception as e:
            # A user's packager: its exception text may carry field data.
            raise PackError("?", f"packager {self.packager.name} failed: {type(e).__name__}") from None
        try:
            return self.framing.frame(header, body)
        except FramingError as e:
            raise PackError("length", str(e)) from None

    def headerLength(self, frame: bytes) -> int:
        if self.framing.headerLength is not None:
            return self.framing.headerLength(frame)
        return len(self.header)


class ISOChannelProtocol(Protocol):
    """
    One ISO 8583 connection.  Reports to C{owner} (an L{IChannelOwner}).

    @ivar counters: C{rx}, C{tx}, C{rx_bad} (frames that did not decode),
        C{rx_keepalive}.
    @ivar lastReceived: clock time of the last bytes received (for idle checks).
    """

    log = Logger()

    def __init__(self, spec: ChannelSpec, owner: IChannelOwner, clock) -> None:
        self.spec = spec
        self.owner = owner
        self.clock = clock
        self._buffer = bytearray()
        self._closing = False
        self.counters = {"rx": 0, "tx": 0, "rx_bad": 0, "rx_keepalive": 0}
        self.lastReceived = self.lastSent = clock.seconds()

    @property
    def peer(self) -> str:
        try:
            address = self.transport.getPeer()
            return f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        except Exception:
            return "?"

    def connectionMade(self) -> None:
        self.lastReceived = self.lastSent = self.clock.seconds()
        self.owner.channelConnected(self)

    def connectionLost(self, reason: Failure = None) -> None:
        self.connected = False
        self._closing = True
        self.owner.channelLost(self, reason)

    def close(self, why: str) -> None:
        """
        Drop this connection (and only it) because of C{why}.
        """
        if not self._closing:
            self._closing = True
            self.log.warn(
                "{framing} connection from {peer} closed: {why}",
                framing=self.spec.framing.name,
                peer=self.peer,
                why=why,
            )
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.lastReceived = self.clock.seconds()
        # Frames are cut from data itself (one slice each) unless a partial
        # frame is pending; then data joins it in the buffer.
        buffer = self._buffer
        if buffer:
            buffer += data
        else:
            buffer = data
        framing = self.spec.framing
        maxLength = self.spec.maxPacketLength
        offset = 0
        try:
            while offset < len(buffer) and not self._closing:
                found = framing.nextFrame(buffer, offset, maxLength)
                if found is None:
                    break
                frame, offset = found
                if frame is KEEPALIVE:  # a zero-length frame
                    self.counters["rx_keepalive"] += 1
                    continue
                self._frameReceived(frame)
        except FramingError as e:
            self.close(str(e))
            del self._buffer[:]
            return
        if buffer is not data:
            del buffer[:offset]
        elif offset < len(data):
            self._buffer += memoryview(data)[offset:]

    def _frameReceived(self, frame: bytes) -> None:
        spec = self.spec
        headerLength = spec.headerLength(frame)
        if headerLength > len(frame):
            self._bad("frame shorter than its header", None)
            return
        try:
            message = spec.packager.unpack(frame[headerLength:])
        except UnpackError as e:
            self._bad(str(e), None)
            return
        if headerLength:
            message[HEADER_KEY] = frame[:headerLength].hex().upper()
        self.counters["rx"] += 1
        try:
            self.owner.channelMessage(self, message)
        except Exception:
            self.log.failure(
                "handler for {framing} message from {peer} failed: {message}",
                framing=spec.framing.name,
                peer=self.peer,
                message=maskMessage(message, spec.packager.binaryFields),
            )

    def _bad(self, why: str, message) -> None:
        self.counters["rx_bad"] += 1
        self.log.warn(
            "undecodable {framing} frame from {peer} ({packager}): {why}",
            framing=self.spec.framing.name,
            peer=self.peer,
            packager=self.spec.packager.name,
            why=why,
        )

    def sendMessage(self, message: Mapping[str, str]) -> None:
        """
        Pack, frame and write C{message}.

        @raise PackError: nothing was written.
        """
        data = self.spec.encode(message)
        self.transport.write(data)
        self.counters["tx"] += 1
        self.lastSent = self.clock.seconds()

    def sendKeepAlive(self) -> None:
        """
        Write a zero-length frame.
        """
        self.transport.write(self.spec.framing.keepAlive())
        self.lastSent = self.clock.seconds()
