"""
The codec, sans-IO: bytes <-> frames <-> message dicts, with nothing of
Twisted.

Framings (L{Framing}, one per jPOS channel class, found by L{getFraming});
packagers (L{getPackager}, in L{muxpool.iso.packagers}); the small facts
about messages several layers need (L{isResponse}, L{responseMTI}, the
network messages a link sends itself); and the one place that renders a
message for a log line, with card data masked (L{maskMessage}).
"""

from muxpool.iso._framing import (
    DEFAULT_MAX_PACKET_LENGTH,
    FRAMINGS,
    KEEPALIVE,
    Framing,
    FramingError,
    LengthCodec,
    getFraming,
    newBase1Header,
)
from muxpool.iso._masking import (
    HIDDEN,
    PARTIAL,
    binaryFieldsOf,
    describeForReversal,
    maskMessage,
    maskValue,
)
from muxpool.iso._messages import (
    ECHO,
    SIGN_OFF,
    SIGN_ON,
    Stans,
    isMTI,
    isRequest,
    isResponse,
    networkRequest,
    responseMTI,
)
from muxpool.iso._samples import TEST_PAN, defaultFields, sampleRequest
from muxpool.iso.packagers import (
    PackagerConfigError,
    PackError,
    UnpackError,
    getPackager,
    loadGenericPackager,
    registerPackager,
)

__all__ = [
    "DEFAULT_MAX_PACKET_LENGTH",
    "ECHO",
    "FRAMINGS",
    "Framing",
    "FramingError",
    "HIDDEN",
    "KEEPALIVE",
    "LengthCodec",
    "PARTIAL",
    "PackError",
    "PackagerConfigError",
    "SIGN_OFF",
    "SIGN_ON",
    "TEST_PAN",
    "Stans",
    "UnpackError",
    "binaryFieldsOf",
    "defaultFields",
    "describeForReversal",
    "getFraming",
    "getPackager",
    "isMTI",
    "isRequest",
    "isResponse",
    "loadGenericPackager",
    "maskMessage",
    "maskValue",
    "networkRequest",
    "newBase1Header",
    "registerPackager",
    "responseMTI",
    "sampleRequest",
]
