"""
A channel's configuration: jPOS's C{<channel class packager header>} with
its properties, as one frozen L{ChannelSpec} that encodes and decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from muxpool._config import yesNo
from muxpool._support import describeError
from muxpool.interfaces import IPackager
from muxpool.iso import (
    DEFAULT_MAX_PACKET_LENGTH,
    Framing,
    FramingError,
    PackError,
    UnpackError,
    getFraming,
    getPackager,
    newBase1Header,
)

HEADER_KEY = "h"


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
        packager: Union[str, IPackager] = "ISO87A",
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
        pk = (
            packager
            if IPackager.providedBy(packager)
            else getPackager(packager, props.get("packager-config"))
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
        swap = yesNo(props.get(framing.swapOption), True) if framing.swapOption else True
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
            raise PackError(
                "?", f"packager {self.packager.name} failed: {describeError(e)}"
            ) from None
        try:
            return self.framing.frame(header, body)
        except FramingError as e:
            raise PackError("length", str(e)) from None

    def decode(self, body: bytes) -> dict:
        """
        Unpack one message (the frame without its header).

        @raise UnpackError: if it cannot be unpacked; a user's packager that
            raises anything else is turned into one naming only the
            exception's type and place, since its text may carry field data.
        """
        try:
            return self.packager.unpack(body)
        except UnpackError:
            raise
        except Exception as e:
            raise UnpackError(
                "?", 0, f"packager {self.packager.name} failed: {describeError(e)}"
            ) from None

    def headerLength(self, frame: bytes) -> int:
        if self.framing.headerLength is not None:
            return self.framing.headerLength(frame)
        return len(self.header)
