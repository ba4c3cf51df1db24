"""
The jPOS field classes: for each, the pyiso8583 field spec it amounts to and,
where pyiso8583 cannot express it alone, a string transform applied before
encoding (jPOS's padding on pack) or after decoding (the C{C}/C{D} sign byte
of C{IFB_AMOUNT}).

This one table, L{FIELD_CLASSES}, drives every packager made of jPOS field
classes: pyiso8583's generic encode/decode runs its specs and calls its
transforms, and the compiler (L{muxpool.iso.packagers.compileCodec}) turns the same
specs and the same transforms' expressions into Python source.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from muxpool.iso._ebcdic import NAME as EBCDIC

LATIN1 = "latin-1"  # jPOS's ISOUtil.CHARSET for "ASCII" fields

FieldDef = Tuple[str, int, Optional[bool], str]  # (class, length, pad, name)

_JPOS_PREFIX = "org.jpos.iso."


def shortClass(name: str) -> str:
    """
    A field class name without jPOS's C{org.jpos.iso.} package.
    """
    return name[len(_JPOS_PREFIX) :] if name.startswith(_JPOS_PREFIX) else name


class Transform:
    """
    A string transform written once, as a Python expression of C{value}
    (and builtins only): called as a function on the generic path, and
    inlined as source by the compiler, so both paths pad exactly alike.

    @ivar expression: the expression, e.g. C{"value.rjust(6, '0')"}.
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._function = eval(f"lambda value: {expression}", {})

    def __call__(self, value: str) -> str:
        return self._function(value)

    def __repr__(self) -> str:
        return f"<Transform {self.expression}>"


def fieldSpec(
    data_enc: str, len_enc: str, len_type: int, max_len: int, desc: str, **extra: object
) -> dict:
    """
    One pyiso8583 field spec.
    """
    entry = {
        "data_enc": data_enc,
        "len_enc": len_enc,
        "len_type": len_type,
        "max_len": max_len,
        "desc": desc,
    }
    entry.update(extra)
    return entry


def _zeroPad(length: int) -> Transform:
    return Transform(f"value.rjust({length}, '0')")


def _spacePad(length: int) -> Transform:
    return Transform(f"value.ljust({length}, ' ')")


def _amountPad(length: int) -> Transform:
    return Transform(f"value[:1] + value[1:].rjust({length - 1}, '0')")


def _nibblePad(pad: Optional[bool]) -> dict:
    # jPOS BCDInterpreter: pad=true puts the filler nibble first (0),
    # pad=false puts it last.
    return {"len_count": "nibbles", ("left_pad" if pad else "right_pad"): "0"}


Built = Tuple[dict, Optional[Transform], Optional[Transform]]
#: builder(length, pad, description) -> L{Built}.
Builder = Callable[[int, Optional[bool], str], Built]


def _fixed(enc: str, pad: Optional[Callable[[int], Transform]]) -> Builder:
    def build(length: int, _pad: Optional[bool], desc: str) -> Built:
        return fieldSpec(enc, enc, 0, length, desc), pad(length) if pad else None, None

    return build


def _variable(len_enc: str, len_type: int, data_enc: str) -> Builder:
    def build(length: int, pad: Optional[bool], desc: str) -> Built:
        return fieldSpec(data_enc, len_enc, len_type, length, desc), None, None

    return build


def _bcdNumeric(length: int, pad: Optional[bool], desc: str) -> Built:
    spec = fieldSpec("b", "b", 0, length, desc, **_nibblePad(True if pad is None else pad))
    return spec, _zeroPad(length), None


def _bcdVarNumeric(len_type: int) -> Builder:
    def build(length: int, pad: Optional[bool], desc: str) -> Built:
        spec = fieldSpec("b", "bcd", len_type, length, desc, **_nibblePad(bool(pad)))
        return spec, None, None

    return build


def _asciiBinary(length: int, pad: Optional[bool], desc: str) -> Built:
    # jPOS IFA_BINARY: `length` bytes written as 2*length hex characters.
    return fieldSpec("ascii", "ascii", 0, length * 2, desc), None, None


def _bcdAmount(length: int, pad: Optional[bool], desc: str) -> Built:
    # The sign character as one byte, then the digits in BCD.
    digits = (length >> 1) * 2
    toWire = Transform(f"'%02X' % ord(value[:1] or ' ') + value[1:].rjust({digits}, '0')")
    fromWire = Transform("chr(int(value[:2], 16)) + value[2:]")
    return fieldSpec("b", "b", 0, 1 + (length >> 1), desc), toWire, fromWire


#: jPOS field class -> builder(length, pad, description) giving
#: (pyiso8583 field spec, transform before encode, transform after decode).
FIELD_CLASSES: Dict[str, Callable[..., Built]] = {
    "IFA_NUMERIC": _fixed(LATIN1, _zeroPad),
    "IFE_NUMERIC": _fixed(EBCDIC, _zeroPad),
    "IFB_NUMERIC": _bcdNumeric,
    "IF_CHAR": _fixed(LATIN1, _spacePad),
    "IFA_CHAR": _fixed(LATIN1, _spacePad),
    "IFE_CHAR": _fixed(EBCDIC, _spacePad),
    "IFA_AMOUNT": _fixed(LATIN1, _amountPad),
    "IFB_AMOUNT": _bcdAmount,
    "IFA_LLNUM": _variable(LATIN1, 2, LATIN1),
    "IFA_LLLNUM": _variable(LATIN1, 3, LATIN1),
    "IFB_LLNUM": _bcdVarNumeric(1),
    "IFB_LLLNUM": _bcdVarNumeric(2),
    "IFA_LLCHAR": _variable(LATIN1, 2, LATIN1),
    "IFA_LLLCHAR": _variable(LATIN1, 3, LATIN1),
    "IFB_LLCHAR": _variable("bcd", 1, LATIN1),
    "IFB_LLLCHAR": _variable("bcd", 2, LATIN1),
    "IFE_LLCHAR": _variable(EBCDIC, 2, EBCDIC),
    "IFE_LLLCHAR": _variable(EBCDIC, 3, EBCDIC),
    "IFA_BINARY": _asciiBinary,
    "IFB_BINARY": _fixed("b", None),
    "IFA_LLBINARY": _variable(LATIN1, 2, "b"),
    "IFA_LLLBINARY": _variable(LATIN1, 3, "b"),
    "IFB_LLBINARY": _variable("bcd", 1, "b"),
    "IFB_LLLBINARY": _variable("bcd", 2, "b"),
}

#: Field classes for the MTI (field 0) and the bitmap (field 1).
MTI_CLASSES = {"IFA_NUMERIC": LATIN1, "IFB_NUMERIC": "b", "IFE_NUMERIC": EBCDIC}
BITMAP_CLASSES = {"IFA_BITMAP": (LATIN1, 16), "IFB_BITMAP": ("b", 8)}
