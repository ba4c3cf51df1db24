"""
The EBCDIC code page jPOS uses (IBM1047), as a Python codec named C{ibm1047}.

jPOS's C{IFE_*} field packagers encode with Java's C{IBM1047} charset.
Python ships C{cp037} but not 1047; the two differ only in six positions,
so this module builds 1047 from 037 and registers it once on import.
"""

import codecs
from typing import TYPE_CHECKING, Optional, Tuple

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: Byte positions where IBM1047 differs from cp037, and the character there.
_DIFFERENCES = {
    0x5F: "^",
    0xB0: "\u00ac",  # NOT SIGN
    0xAD: "[",
    0xBD: "]",
    0xBA: "\u00dd",  # Y WITH ACUTE
    0xBB: "\u00a8",  # DIAERESIS
}

NAME = "ibm1047"

_decoding = "".join(_DIFFERENCES.get(i, bytes([i]).decode("cp037")) for i in range(256))
_encoding = codecs.charmap_build(_decoding)


def _encode(text: str, errors: str = "strict") -> Tuple[bytes, int]:
    return codecs.charmap_encode(text, errors, _encoding)


def _decode(data: "Buffer", errors: str = "strict") -> Tuple[str, int]:
    return codecs.charmap_decode(data, errors, _decoding)


_INFO = codecs.CodecInfo(_encode, _decode, name=NAME)


def _search(name: str) -> Optional[codecs.CodecInfo]:
    if name.replace("-", "").replace("_", "").lower() in ("ibm1047", "cp1047"):
        return _INFO
    return None


codecs.register(_search)
