"""
Packagers: a message dict <-> the bytes jPOS's packagers write.

A packager is a pyiso8583 spec plus, for the few field classes pyiso8583
cannot express alone, a pair of string transforms applied before encoding and
after decoding (jPOS's padding on pack, and the ``C``/``D`` sign byte of
``IFB_AMOUNT``).  Every packager here, built-in or loaded from a jPOS
GenericPackager XML file, is made from the same table of jPOS field classes,
L{FIELD_CLASSES}; ISO87A and ISO87B are just lists of C{(class, length)}.

Packagers are found by name (L{getPackager}): the jPOS class name, a short
name, or a name a user registered with L{registerPackager}.
"""

from __future__ import annotations

import importlib
import os
import xml.etree.ElementTree as ET
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple

import iso8583
from zope.interface import implementer

from muxpool import ebcdic
from muxpool.interfaces import IPackager

_LATIN1 = "latin-1"  # jPOS's ISOUtil.CHARSET for "ASCII" fields
_EBCDIC = ebcdic.NAME


class PackagerConfigError(ValueError):
    """
    A packager definition is wrong: names the source, the field and the problem.
    """


class PackError(ValueError):
    """
    A message could not be packed.  Carries the field id, never field data.
    """

    def __init__(self, field: str, reason: str) -> None:
        ValueError.__init__(self, f"cannot pack field {field}: {reason}")
        self.field = field
        self.reason = reason


class UnpackError(ValueError):
    """
    Bytes could not be unpacked.  Carries the field id and byte offset, never
    the bytes themselves (so it is safe to log).
    """

    def __init__(self, field: str, position: int, reason: str) -> None:
        ValueError.__init__(
            self, f"cannot unpack field {field} at byte {position}: {reason}"
        )
        self.field = field
        self.position = position
        self.reason = reason


def _spec(data_enc, len_enc, len_type, max_len, desc, **extra) -> dict:
    entry = {
        "data_enc": data_enc,
        "len_enc": len_enc,
        "len_type": len_type,
        "max_len": max_len,
        "desc": desc,
    }
    entry.update(extra)
    return entry


def _zeroPad(length: int) -> Callable[[str], str]:
    return lambda value: value.rjust(length, "0")


def _spacePad(length: int) -> Callable[[str], str]:
    return lambda value: value.ljust(length, " ")


def _amountPad(length: int) -> Callable[[str], str]:
    return lambda value: value[:1] + value[1:].rjust(length - 1, "0")


def _bcdAmount(length: int) -> Tuple[Callable[[str], str], Callable[[str], str]]:
    digits = (length >> 1) * 2

    def toWire(value: str) -> str:
        return "%02X" % ord(value[:1] or " ") + value[1:].rjust(digits, "0")

    def fromWire(value: str) -> str:
        return chr(int(value[:2], 16)) + value[2:]

    return toWire, fromWire


def _nibblePad(pad: Optional[bool]) -> dict:
    # jPOS BCDInterpreter: pad=true puts the filler nibble first (0),
    # pad=false puts it last.
    return {"len_count": "nibbles", ("left_pad" if pad else "right_pad"): "0"}


def _fixed(enc, pad_fn):
    def build(length, pad, desc):
        return _spec(enc, enc, 0, length, desc), pad_fn(length), None

    return build


def _variable(len_enc, len_type, data_enc):
    def build(length, pad, desc):
        return _spec(data_enc, len_enc, len_type, length, desc), None, None

    return build


def _bcdNumeric(length, pad, desc):
    spec = _spec("b", "b", 0, length, desc, **_nibblePad(True if pad is None else pad))
    return spec, _zeroPad(length), None


def _bcdVarNumeric(len_type):
    def build(length, pad, desc):
        spec = _spec("b", "bcd", len_type, length, desc, **_nibblePad(bool(pad)))
        return spec, None, None

    return build


def _asciiBinary(length, pad, desc):
    # jPOS IFA_BINARY: `length` bytes written as 2*length hex characters.
    return _spec("ascii", "ascii", 0, length * 2, desc), None, None


def _bcdAmountField(length, pad, desc):
    toWire, fromWire = _bcdAmount(length)
    return _spec("b", "b", 0, 1 + (length >> 1), desc), toWire, fromWire


#: jPOS field class -> builder(length, pad, description) giving
#: (pyiso8583 field spec, transform before encode, transform after decode).
FIELD_CLASSES: Dict[str, Callable] = {
    "IFA_NUMERIC": _fixed(_LATIN1, _zeroPad),
    "IFE_NUMERIC": _fixed(_EBCDIC, _zeroPad),
    "IFB_NUMERIC": _bcdNumeric,
    "IF_CHAR": _fixed(_LATIN1, _spacePad),
    "IFA_CHAR": _fixed(_LATIN1, _spacePad),
    "IFE_CHAR": _fixed(_EBCDIC, _spacePad),
    "IFA_AMOUNT": _fixed(_LATIN1, _amountPad),
    "IFB_AMOUNT": _bcdAmountField,
    "IFA_LLNUM": _variable(_LATIN1, 2, _LATIN1),
    "IFA_LLLNUM": _variable(_LATIN1, 3, _LATIN1),
    "IFB_LLNUM": _bcdVarNumeric(1),
    "IFB_LLLNUM": _bcdVarNumeric(2),
    "IFA_LLCHAR": _variable(_LATIN1, 2, _LATIN1),
    "IFA_LLLCHAR": _variable(_LATIN1, 3, _LATIN1),
    "IFB_LLCHAR": _variable("bcd", 1, _LATIN1),
    "IFB_LLLCHAR": _variable("bcd", 2, _LATIN1),
    "IFE_LLCHAR": _variable(_EBCDIC, 2, _EBCDIC),
    "IFE_LLLCHAR": _variable(_EBCDIC, 3, _EBCDIC),
    "IFA_BINARY": _asciiBinary,
    "IFB_BINARY": _fixed("b", lambda length: None),
    "IFA_LLBINARY": _variable(_LATIN1, 2, "b"),
    "IFA_LLLBINARY": _variable(_LATIN1, 3, "b"),
    "IFB_LLBINARY": _variable("bcd", 1, "b"),
    "IFB_LLLBINARY": _variable("bcd", 2, "b"),
}

#: Field classes for the MTI (field 0) and the bitmap (field 1).
MTI_CLASSES = {"IFA_NUMERIC": _LATIN1, "IFB_NUMERIC": "b", "IFE_NUMERIC": _EBCDIC}
BITMAP_CLASSES = {"IFA_BITMAP": (_LATIN1, 16), "IFB_BITMAP": ("b", 8)}

_JPOS_PREFIX = "org.jpos.iso."


def _shortClass(name: str) -> str:
    return name[len(_JPOS_PREFIX):] if name.startswith(_JPOS_PREFIX) else name


FieldDef = Tuple[str, int, Optional[bool], str]  # (class, length, pad, name)


@implementer(IPackager)
class Packager:
    """
    Packs and unpacks message dicts (pyiso8583's form: ``"t"`` the MTI,
    ``"2"``..``"128"`` the fields, binary fields as upper-case hex strings).

    @ivar name: a name for logs and errors.
    @ivar spec: the pyiso8583 spec this packager drives.
    @ivar binaryFields: ids of fields whose value is binary (hex); they are
        hidden entirely when a message is logged.
    @ivar fields: field id -> (jPOS class, length, pad, name).
    """

    def __init__(self, name: str, fields: Mapping[int, FieldDef], source: str = "") -> None:
        self.name = name
        self.fields = {fid: (_shortClass(d[0]),) + tuple(d[1:]) for fid, d in fields.items()}
        where = source or name
        self.spec: Dict[str, dict] = {"h": _spec(_LATIN1, _LATIN1, 0, 0, "Header")}
        self._toWire: Dict[str, Callable[[str], str]] = {}
        self._fromWire: Dict[str, Callable[[str], str]] = {}
        binary = set()
        for fid, (cls, length, pad, desc) in sorted(fields.items()):
            cls = _shortClass(cls)
            if length <= 0:
                raise PackagerConfigError(
                    f"{where}: field {fid}: bad length {length!r} (must be > 0)"
                )
            if fid == 0:
                if cls not in MTI_CLASSES:
                    raise PackagerConfigError(
                        f"{where}: field 0: unsupported MTI class {cls!r} "
                        f"(known: {', '.join(sorted(MTI_CLASSES))})"
                    )
                self.spec["t"] = _spec(MTI_CLASSES[cls], _LATIN1, 0, 4, desc)
                continue
            if fid == 1:
                if cls not in BITMAP_CLASSES:
                    raise PackagerConfigError(
                        f"{where}: field 1: unsupported bitmap class {cls!r} "
                        f"(known: {', '.join(sorted(BITMAP_CLASSES))})"
                    )
                enc, size = BITMAP_CLASSES[cls]
                self.spec["p"] = _spec(enc, _LATIN1, 0, size, "Bitmap, Primary")
                self.spec["1"] = _spec(enc, _LATIN1, 0, size, "Bitmap, Secondary")
                continue
            if fid == 65 and "BINARY" in cls and length == 1:
                continue  # jPOS's "BITMAP, EXTENDED" placeholder
            if not 2 <= fid <= 128:
                raise PackagerConfigError(f"{where}: field {fid}: id out of range 0-128")
            builder = FIELD_CLASSES.get(cls)
            if builder is None:
                raise PackagerConfigError(
                    f"{where}: field {fid}: unknown field class {cls!r} "
                    f"(known: {', '.join(sorted(FIELD_CLASSES))})"
                )
            spec, toWire, fromWire = builder(length, pad, desc)
            key = str(fid)
            self.spec[key] = spec
            if toWire is not None:
                self._toWire[key] = toWire
            if fromWire is not None:
                self._fromWire[key] = fromWire
            if spec["data_enc"] == "b" or cls.endswith("BINARY"):
                binary.add(key)
        for required, what in (("t", "field 0 (MTI)"), ("p", "field 1 (bitmap)")):
            if required not in self.spec:
                raise PackagerConfigError(f"{where}: {what} is not defined")
        self.binaryFields = frozenset(binary)

    def __repr__(self) -> str:
        return f"<Packager {self.name}>"

    def pack(self, message: Mapping[str, str]) -> bytes:
        """
        Pack C{message} (not modified) into bytes, padding fixed fields as
        jPOS does.

        @raise PackError: naming the field that could not be packed.
        """
        doc = {}
        toWire = self._toWire
        spec = self.spec
        for key, value in message.items():
            if key == "t" or (key.isdigit() and key not in ("1", "65")):
                if key != "t" and key not in spec:
                    raise PackError(key, f"not defined in packager {self.name}")
                if not isinstance(value, str):
                    raise PackError(key, f"value must be str, not {type(value).__name__}")
                fn = toWire.get(key)
                doc[key] = fn(value) if fn is not None else value
        try:
            data, _ = iso8583.encode(doc, spec)
        except iso8583.EncodeError as e:
            raise PackError(e.field, e.msg) from None
        except (ValueError, TypeError, IndexError) as e:
            raise PackError("?", str(e)) from None
        return bytes(data)

    def unpack(self, data: bytes) -> dict:
        """
        Unpack C{data} into a message dict.

        @raise UnpackError: naming the field and offset (never the bytes).
        """
        try:
            doc, _ = iso8583.decode(data, self.spec)
        except iso8583.DecodeError as e:
            raise UnpackError(e.field, e.pos, e.msg) from None
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise UnpackError("?", 0, f"{type(e).__name__}: {e}") from None
        for key, fn in self._fromWire.items():
            if key in doc:
                try:
                    doc[key] = fn(doc[key])
                except ValueError as e:
                    raise UnpackError(key, 0, str(e)) from None
        return doc


def _table(rows: Iterable[Tuple[str, int]], pad: Optional[bool] = None) -> Dict[int, FieldDef]:
    out = {}
    for fid, (cls, length) in enumerate(rows):
        if cls:
            out[fid] = (cls, length, pad, f"Field {fid}")
    return out


def _iso87(numeric, bitmap, llnum, llchar, lllchar, binary, amount, pad):
    """
    The ISO 8583:1987 layout jPOS's ISO87A and ISO87B packagers share; they
    differ only in which class encodes each kind of field.
    """
    n, c = numeric, "IF_CHAR"
    rows = (
        [(n, 4), (bitmap, 16), (llnum, 19), (n, 6), (n, 12), (n, 12), (n, 12), (n, 10)]
        + [(n, 8)] * 3 + [(n, 6), (n, 6)] + [(n, 4)] * 6 + [(n, 3)] * 6
        + [(n, 2), (n, 2), (n, 1)] + [(amount, 9)] * 4
        + [(llnum, 11), (llnum, 11), (llchar, 28), (llnum, 37), (lllchar, 104)]
        + [(c, 12), (c, 6), (c, 2), (c, 3), (c, 8), (c, 15), (c, 40)]
        + [(llchar, 25), (llchar, 76)] + [(lllchar, 999)] * 3 + [(c, 3)] * 3
        + [(binary, 8), (n, 16), (lllchar, 120)] + [(lllchar, 999)] * 9
        + [(binary, 8), (binary, 1), (n, 1), (n, 2), (n, 3), (n, 3), (n, 3), (n, 4), (n, 4), (n, 6)]
        + [(n, 10)] * 8 + [(n, 12)] * 4 + [(n, 16)] * 4 + [(n, 42)]
        + [(c, 1), (c, 2), (c, 6), (c, 7), (c, 42), (binary, 16), (amount, 17), (c, 25)]
        + [(llnum, 11), (llnum, 11), (llchar, 17), (llchar, 28), (llchar, 28), (lllchar, 100)]
        + [(lllchar, 999)] * 23 + [(binary, 8)]
    )
    assert len(rows) == 129
    fields = _table(rows)
    if pad is not None:
        # ISO87B: fixed numerics pad left (true); LL numerics pad right (false).
        fields = {
            fid: (cls, length, cls == numeric or cls == amount if pad else None, desc)
            for fid, (cls, length, _, desc) in fields.items()
        }
    return fields


ISO87A_FIELDS = _iso87(
    "IFA_NUMERIC", "IFA_BITMAP", "IFA_LLNUM", "IFA_LLCHAR", "IFA_LLLCHAR",
    "IFA_BINARY", "IFA_AMOUNT", None,
)
ISO87B_FIELDS = _iso87(
    "IFB_NUMERIC", "IFB_BITMAP", "IFB_LLNUM", "IFB_LLCHAR", "IFB_LLLCHAR",
    "IFB_BINARY", "IFB_AMOUNT", True,
)


def _bool(value: Optional[str]) -> Optional[bool]:
    if value is None:
        return None
    return value.strip().lower() in ("true", "yes", "1")


def loadGenericPackager(path: str) -> Packager:
    """
    Build a L{Packager} from a jPOS GenericPackager XML file
    (C{<isopackager>} with C{<isofield id length name class pad>}).

    @raise PackagerConfigError: naming the file, the field and the problem.
    """
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise PackagerConfigError(f"{path}: cannot read packager XML: {e}") from None
    if root.tag != "isopackager":
        raise PackagerConfigError(
            f"{path}: root element is <{root.tag}>, expected <isopackager>"
        )
    fields: Dict[int, FieldDef] = {}
    for element in root:
        if not isinstance(element.tag, str):
            continue
        if element.tag != "isofield":
            raise PackagerConfigError(
                f"{path}: field {element.get('id', '?')}: unsupported element <{element.tag}>"
            )
        fid_text = element.get("id")
        try:
            fid = int(fid_text)
        except (TypeError, ValueError):
            raise PackagerConfigError(f"{path}: field {fid_text!r}: id is not a number") from None
        if fid in fields:
            raise PackagerConfigError(f"{path}: field {fid}: defined twice")
        cls = element.get("class")
        if not cls:
            raise PackagerConfigError(f"{path}: field {fid}: no class attribute")
        length_text = element.get("length")
        try:
            length = int(length_text)
        except (TypeError, ValueError):
            raise PackagerConfigError(
                f"{path}: field {fid}: bad length {length_text!r}"
            ) from None
        fields[fid] = (cls, length, _bool(element.get("pad")), element.get("name", f"Field {fid}"))
    return Packager(os.path.basename(path), fields, source=path)


_BUILTIN: Dict[str, Callable[[], Packager]] = {
    "ISO87A": lambda: Packager("ISO87A", ISO87A_FIELDS),
    "ISO87B": lambda: Packager("ISO87B", ISO87B_FIELDS),
}
_ALIASES = {
    "org.jpos.iso.packager.ISO87APackager": "ISO87A",
    "ISO87APackager": "ISO87A",
    "org.jpos.iso.packager.ISO87BPackager": "ISO87B",
    "ISO87BPackager": "ISO87B",
}
_GENERIC = {"org.jpos.iso.packager.GenericPackager", "GenericPackager", "generic"}
_registered: Dict[str, object] = {}
_cache: Dict[str, Packager] = {}


def registerPackager(name: str, packager) -> None:
    """
    Make C{packager} (an L{IPackager}, or a pyiso8583 spec dict) known as
    C{name} to L{getPackager} and to descriptors.
    """
    if isinstance(packager, Mapping):
        packager = SpecPackager(name, packager)
    if not IPackager.providedBy(packager):
        raise TypeError(f"{packager!r} does not provide IPackager")
    _registered[name] = packager


@implementer(IPackager)
class SpecPackager:
    """
    A user's own pyiso8583 spec used as is (no jPOS padding rules).
    """

    def __init__(self, name: str, spec: Mapping) -> None:
        self.name = name
        self.spec = dict(spec)
        self.binaryFields = frozenset(
            k for k, v in spec.items() if k.isdigit() and v.get("data_enc") == "b"
        )

    def pack(self, message):
        doc = {k: v for k, v in message.items() if k != "p" and k != "h"}
        try:
            return bytes(iso8583.encode(doc, self.spec)[0])
        except iso8583.EncodeError as e:
            raise PackError(e.field, e.msg) from None

    def unpack(self, data):
        try:
            return iso8583.decode(data, self.spec)[0]
        except iso8583.DecodeError as e:
            raise UnpackError(e.field, e.pos, e.msg) from None


def getPackager(name: str, config: Optional[str] = None) -> IPackager:
    """
    Find a packager by name: a jPOS class name
    (C{org.jpos.iso.packager.ISO87APackager}), a short name (C{ISO87A}), a
    registered name, C{GenericPackager} with C{config} the XML path, or a
    dotted path to an L{IPackager} object or a pyiso8583 spec.

    @raise PackagerConfigError: for an unknown name, listing the known ones.
    """
    if name in _GENERIC:
        if not config:
            raise PackagerConfigError(
                f"packager {name}: needs a packager-config (path to the XML file)"
            )
        key = "generic:" + os.path.abspath(config)
        if key not in _cache:
            _cache[key] = loadGenericPackager(config)
        return _cache[key]
    if name in _registered:
        return _registered[name]
    short = _ALIASES.get(name, name)
    if short.upper() in _BUILTIN:
        short = short.upper()
        if short not in _cache:
            _cache[short] = _BUILTIN[short]()
        return _cache[short]
    if "." in name:
        module, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            pass
        else:
            if isinstance(obj, Mapping):
                obj = SpecPackager(name, obj)
            elif not IPackager.providedBy(obj) and callable(obj):
                obj = obj()
            if IPackager.providedBy(obj):
                return obj
            raise PackagerConfigError(f"packager {name}: does not provide IPackager")
    known = sorted(set(_BUILTIN) | set(_ALIASES) | set(_registered) | {"GenericPackager"})
    raise PackagerConfigError(f"unknown packager {name!r} (known: {', '.join(known)})")
