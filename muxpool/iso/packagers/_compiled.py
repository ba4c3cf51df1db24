"""
The compiled codec: a pyiso8583 spec, with a packager's transforms, turned
once into a C{pack(message)} and an C{unpack(data)} function that do for
that spec what pyiso8583's C{encode} and C{decode} do, with every decision
about the spec (lengths, encodings, padding, length prefixes, bitmap layout)
taken at compile time instead of for every field of every message.

The functions are Python source generated per spec and exec'd once, as
C{collections.namedtuple} does: straight-line code per field, in bitmap
order, with the field's constants inlined and its transform's expression
(L{muxpool.iso.packagers.Transform}) pasted in.  (Per-field
closures behind a dispatch table measured about a quarter slower on
CPython 3.11.)  A frame is decoded once as a whole (to latin-1 text, to
upper-case hex) and fields are slices of that; length prefixes are looked up
in tables built with pyiso8583's own formulas.

The compiled functions take the common case, exactly.  Whatever they do not
take exactly as pyiso8583 would (a value too long, a frame cut short, a
field the spec lacks, a length prefix written with a space) they hand, whole,
to the generic path they were given, which packs or unpacks it or raises the
error naming the field and offset.  So the two paths cannot disagree on an
error, and a case the compiler does not know costs time, never correctness.

Pure Python, for CPython and PyPy alike.
"""

from __future__ import annotations

import codecs
from binascii import a2b_hex
from functools import lru_cache
from typing import Callable, Dict, List, Literal, Mapping, Optional, Tuple, Union, cast

from muxpool.iso.packagers._fieldclasses import Transform
from muxpool.iso.packagers._shared import SHARED_FIELDS, SHARED_LENGTH, SHARED_MAX

#: The largest length table the compiler builds (a 4-digit length prefix).
MAX_TABLE = 10000

_LOW = (1 << 64) - 1  # the secondary bitmap's bits in a 128-bit bitmap
_TOP = 1 << 127  # field 1: a secondary bitmap follows
_ALL = bytes(range(256))


class NotCompilable(Exception):
    """
    The spec has something the compiler does not handle; the reason says what.
    """


class Fallback(Exception):
    """
    Raised inside a compiled function: this input goes to the generic path.
    """


class _BitmapBits(dict):
    """
    Message key -> its bit in a 128-bit bitmap (0 for keys that are not
    packed).  A key that is not a field id is ignored, as on the generic path;
    an undefined field id is a KeyError, which hands the message to it.
    """

    def __missing__(self, key: object) -> int:
        if isinstance(key, str) and not key.isdigit():
            return 0
        raise KeyError(key)


class _Text:
    """
    One single-byte text encoding, as the generated code reads and writes it.

    @ivar view: the name of a variable holding the whole frame as text in
        this encoding, so a field is a slice of it.
    @ivar asciiOnly: pyiso8583's C{"ascii"}: the latin-1 view, and a slice
        with a byte above 0x7F is not taken.
    @ivar latin1: latin-1 or ASCII: a str is its bytes, one to one.
    """

    def __init__(
        self, view: str, viewSource: str, encode: str, fromAscii: str, asciiOnly: bool = False
    ) -> None:
        self.view = view
        self.viewSource = viewSource
        self._encode = encode
        self._fromAscii = fromAscii
        self.asciiOnly = asciiOnly
        self.latin1 = view == "T"

    def encode(self, expression: str) -> str:
        """
        Source giving the bytes of the str C{expression}.
        """
        return self._encode.format(expression)

    def fromAscii(self, expression: str) -> str:
        """
        Source giving, in this encoding, the ASCII bytes C{expression}.
        """
        return self._fromAscii.format(expression)


class _Codec:
    """
    Builds the source of one spec's C{pack} and C{unpack}.
    """

    def __init__(
        self,
        spec: Mapping[str, Mapping],
        toWire: Mapping[str, Transform],
        fromWire: Mapping[str, Transform],
    ) -> None:
        self.spec = spec
        self.toWire = toWire
        self.fromWire = fromWire
        self.namespace: Dict[str, object] = {
            "a2b_hex": a2b_hex,
            "Fallback": Fallback,
            "_bytes": _bytes,
            "SHARED": {},
        }
        self._texts: Dict[str, _Text] = {}
        self.views: Dict[str, str] = {}  # variable -> source, for the views unpack uses
        self._check()
        self.fieldCodecs = {fid: self.field(fid) for fid in self.fields}

    # -- what the compiler takes

    def _check(self) -> None:
        """
        Note the fields and the text encodings, or raise L{NotCompilable}.
        """
        spec = self.spec
        for key in ("h", "t", "p", "1"):
            if key not in spec:
                raise NotCompilable(f"the spec has no {key!r}")
        if _int(spec["h"], "max_len") > 0:
            raise NotCompilable("a message header ('h')")
        self.fields: List[int] = []
        for key in spec:
            if not isinstance(key, str) or not key.isdigit() or key == "1":
                continue
            fid = int(key)
            if key == "65":
                continue  # pyiso8583 never packs it: bit 65 announces a third bitmap
            if not (2 <= fid <= 128 and key == str(fid)):
                raise NotCompilable(f"field {key}: outside 2-128")
            self.fields.append(fid)
        self.fields.sort()
        for key in ("t", "p", "1"):
            if spec[key]["data_enc"] != "b":
                self.text(key, spec[key]["data_enc"])
        # When every value is latin-1 (or ASCII) text, pack joins str pieces
        # and encodes them once, at the end.
        self.asText = all(
            spec[key]["data_enc"] != "b" and self.text(key, spec[key]["data_enc"]).latin1
            for key in ["t", "p", "1"] + [str(fid) for fid in self.fields]
        )

    def text(self, key: str, encoding: str) -> _Text:
        """
        How the generated code handles C{encoding} (for field C{key}).

        @raise NotCompilable: it is not one of pyiso8583's C{"ascii"}, latin-1,
            or a single-byte code page that maps the 256 bytes onto latin-1's
            256 characters (the EBCDIC ones).
        """
        if encoding in self._texts:
            return self._texts[encoding]
        try:
            name = codecs.lookup(encoding).name
            chars = _ALL.decode(encoding, "replace")
        except (LookupError, TypeError, ValueError):
            raise NotCompilable(f"field {key}: encoding {encoding!r}") from None
        if name == "iso8859-1":
            text = _Text("T", "s.decode('latin-1')", "{}.encode('latin-1')", "{}")
        elif name == "ascii":
            text = _Text("T", "s.decode('latin-1')", "{}.encode('ascii')", "{}", True)
        elif sorted(map(ord, chars)) == list(range(256)) and chars.encode(encoding) == _ALL:
            n = len(self._texts)
            toLatin1 = bytes(map(ord, chars))
            fromLatin1 = bytes(chars.index(chr(b)) for b in range(256))
            self.namespace[f"FROM_{n}"] = toLatin1
            self.namespace[f"TO_{n}"] = fromLatin1
            text = _Text(
                f"T{n}",
                f"s.translate(FROM_{n}).decode('latin-1')",
                f"{{}}.encode('latin-1').translate(TO_{n})",
                f"{{}}.translate(TO_{n})",
            )
        else:
            raise NotCompilable(f"field {key}: encoding {encoding!r} is not single-byte latin-1")
        self._texts[encoding] = text
        return text

    def view(self, text: Optional[_Text]) -> str:
        """
        The variable holding the whole frame as C{text} (or as upper-case
        hex, for C{None}); unpack computes it once, at the top.
        """
        if text is None:
            self.views["H"] = "s.hex().upper()"
            return "H"
        self.views[text.view] = text.viewSource
        return text.view

    def field(self, fid: int) -> "_Field":
        key = str(fid)
        fs = self.spec[key]
        return _Field(self, key, fs, self.toWire.get(key), self.fromWire.get(key))

    # -- pack

    def packSource(self) -> str:
        """
        C{pack(m)}: the bitmap from the message's keys, then the MTI, the
        bitmaps and, bit by bit, each field's bytes.
        """
        spec = self.spec
        fields = self.fieldCodecs
        bits = _BitmapBits({"t": 0, "p": 0, "h": 0, "1": 0, "65": 0})
        for fid in self.fields:
            bits[str(fid)] = 1 << (128 - fid)
        self.namespace["BITS"] = bits
        out = _Source()
        with out.block("def pack(m):"):
            with out.block("try:"):
                out.line("bm = 0")
                with out.block("for k in m:"):
                    out.line("bm |= BITS[k]")
                out.line("value = m['t']")
                _packMTI(self, spec["t"], out)
                out.line(f"sec = bm & {_LOW:#x}")
                primary = self.packBitmap("p", "bm >> 64")
                with out.block("if sec:"):
                    out.line(f"bm |= {_TOP:#x}")
                    out.line(f"out = [mti, {primary}, {self.packBitmap('1', 'sec')}]")
                with out.block("else:"):
                    out.line(f"out = [mti, {primary}]")
                out.line("ap = out.append")
                out.line("bb = bm.to_bytes(16, 'big')")
                for byte in range(8):
                    self.packByte(out, byte, fields)
                with out.block("if sec:"):
                    for byte in range(8, 16):
                        self.packByte(out, byte, fields)
                if self.asText:
                    out.line("return ''.join(out).encode('latin-1')")
                else:
                    out.line("return b''.join(out)")
            with out.block("except Exception:"):
                out.line("return packFallback(m)")
        return out.text()

    def packBitmap(self, key: str, bits: str) -> str:
        """
        Source giving bitmap C{key} with the 64 bits C{bits} on the wire.
        """
        encoding = self.spec[key]["data_enc"]
        if encoding == "b":
            return f"({bits}).to_bytes(8, 'big')"
        if self.asText:
            return f"'%016X' % ({bits})"
        return self.text(key, encoding).fromAscii(f"(b'%016X' % ({bits}))")

    def packByte(self, out: "_Source", byte: int, fields: Mapping[int, "_Field"]) -> None:
        present = [(fid, fields[fid]) for fid in _bitsOf(byte) if fid in fields]
        if not present:
            return
        out.line(f"c = bb[{byte}]")
        with out.block("if c:"):
            for fid, field in present:
                with out.block(f"if c & {_mask(fid)}:"):
                    field.pack(out)

    # -- unpack

    def unpackSource(self) -> str:
        """
        C{unpack(s)}: the views of C{s}, the MTI, the bitmaps, and bit by
        bit each field, as slices of the views; then the end of C{s}.
        """
        spec = self.spec
        fields = self.fieldCodecs
        body = _Source()
        body.indent = 2
        _unpackMTI(self, spec["t"], body)
        with body.block(f"if len(SHARED) > {SHARED_MAX}:"):
            body.line("SHARED.clear()")
        body.line("out = {'t': SHARED.setdefault(mti, mti)}")
        self.unpackBitmap(body, "p", "bb")
        with body.block("if bb[0] & 128:"):
            self.unpackBitmap(body, "1", "sb")
            with body.block("if sb[0] & 128:"):
                body.line("raise Fallback  # a third bitmap")
        for byte in range(8):
            self.unpackByte(body, byte, "bb", fields)
        with body.block("if bb[0] & 128:"):
            for byte in range(8, 16):
                self.unpackByte(body, byte, "sb", fields)
        with body.block("if i != len(s):"):
            body.line("raise Fallback")
        body.line("return out")
        out = _Source()
        with out.block("def unpack(s):"):
            with out.block("try:"):
                with out.block("if s.__class__ is not bytes:"):
                    out.line("s = _bytes(s)")
                for name, source in sorted(self.views.items()):
                    out.line(f"{name} = {source}")
                out.extend(body)
            with out.block("except Exception:"):
                out.line("return unpackFallback(s)")
        return out.text()

    def unpackBitmap(self, out: "_Source", key: str, name: str) -> None:
        """
        Source reading bitmap C{key} at C{i} into C{out} and its bytes into
        the variable C{name}.
        """
        encoding = self.spec[key]["data_enc"]
        if encoding == "b":
            out.line(f"{name} = s[i:i + 8]")
            out.line(f"out[{key!r}] = {self.view(None)}[2 * i:2 * i + 16]")
            out.line("i += 8")
        else:
            out.line(f"value = {self.view(self.text(key, encoding))}[i:i + 16]")
            out.line(f"{name} = a2b_hex(value)")
            out.line(f"out[{key!r}] = value")
            out.line("i += 16")

    def unpackByte(
        self, out: "_Source", byte: int, bitmap: str, fields: Mapping[int, "_Field"]
    ) -> None:
        ids = [fid for fid in _bitsOf(byte) if fid not in (1, 65)]
        undefined = sum(_mask(fid) for fid in ids if fid not in fields)
        out.line(f"c = {bitmap}[{byte % 8}]")
        with out.block("if c:"):
            if undefined:
                with out.block(f"if c & {undefined}:"):
                    out.line("raise Fallback  # a field the spec does not define")
            for fid in ids:
                if fid in fields:
                    with out.block(f"if c & {_mask(fid)}:"):
                        fields[fid].unpack(out)


class _Field:
    """
    One field's pack and unpack source.
    """

    def __init__(
        self,
        codec: _Codec,
        key: str,
        fs: Mapping,
        toWire: Optional[Transform],
        fromWire: Optional[Transform],
    ) -> None:
        self.codec = codec
        self.key = key
        self.toWire = toWire
        self.fromWire = fromWire
        self.binary = fs["data_enc"] == "b"
        self.text = None if self.binary else codec.text(key, fs["data_enc"])
        self.nibbles = fs.get("len_count", "bytes") == "nibbles"
        if self.nibbles and not self.binary:
            raise NotCompilable(f"field {key}: a text field counted in nibbles")
        self.width = _int(fs, "len_type")
        self.maxLength = _int(fs, "max_len")
        self.pad: Tuple[str, str] = (fs.get("left_pad", "")[:1], fs.get("right_pad", "")[:1])
        #: Unpacked to a value shared with other messages that hold the same
        #: (see L{SHARED_MAX}).
        self.shared = (
            key in SHARED_FIELDS
            and fromWire is None
            and not self.binary
            and self.maxLength <= SHARED_LENGTH
        )
        if self.width:
            prefixes, lengths = _lengthTables(fs["len_enc"], self.width, self.maxLength)
            if codec.asText:
                prefixes = tuple(prefix.decode("latin-1") for prefix in prefixes)
            codec.namespace[f"PREFIX_{key}"] = prefixes
            codec.namespace[f"LENGTH_{key}"] = lengths

    def pack(self, out: "_Source") -> None:
        key = self.key
        out.line(f"value = m[{key!r}]")
        if self.toWire is not None:
            out.line(f"value = {self.toWire.expression}")
        elif self.binary:
            # pyiso8583 would take bytes to a2b_hex: only str is a value.
            with out.block("if value.__class__ is not str:"):
                out.line("raise Fallback")
        if self.nibbles:
            self._packNibbles(out)
            return
        if self.binary:
            out.line("d = a2b_hex(value)")
        elif self.codec.asText:
            out.line("d = value")
            assert self.text is not None  # only binary fields have none
            if self.text.asciiOnly:
                with out.block("if not d.isascii():"):
                    out.line("raise Fallback")
        else:
            assert self.text is not None
            out.line(f"d = {self.text.encode('value')}")
        if self.width:
            out.line(f"ap(PREFIX_{key}[len(d)])")
        else:
            with out.block(f"if len(d) != {self.maxLength}:"):
                out.line("raise Fallback")
        out.line("ap(d)")

    def _packNibbles(self, out: "_Source") -> None:
        left, right = self.pad
        padded = f"{left!r} + value" if left else f"value + {right!r}" if right else None
        if self.width:
            out.line("n = len(value)")
            out.line(f"ap(PREFIX_{self.key}[n])")
            if padded:
                out.line(f"ap(a2b_hex({padded} if n & 1 else value))")
            else:
                out.line("ap(a2b_hex(value))")  # an odd length fails, as pyiso8583's
            return
        with out.block(f"if len(value) != {self.maxLength}:"):
            out.line("raise Fallback")
        if self.maxLength & 1:
            out.line(f"ap(a2b_hex({padded}))" if padded else "raise Fallback")
        else:
            out.line("ap(a2b_hex(value))")

    def unpack(self, out: "_Source") -> None:
        key = self.key
        length: object = self.maxLength
        if self.width:
            out.line(f"n = LENGTH_{key}[s[i:i + {self.width}]]")
            out.line(f"i += {self.width}")
            length = "n"
        if self.nibbles:
            value, advance = self._unpackNibbles(out, length)
        elif self.binary:
            end = "2 * (i + n)" if length == "n" else f"2 * i + {2 * self.maxLength}"
            value, advance = f"{self.codec.view(None)}[2 * i:{end}]", length
        else:
            value, advance = f"{self.codec.view(self.text)}[i:i + {length}]", length
        checkAscii = self.text is not None and self.text.asciiOnly
        if checkAscii or self.fromWire is not None:
            if value != "value":
                out.line(f"value = {value}")
            if checkAscii:
                with out.block("if not value.isascii():"):
                    out.line("raise Fallback")
            value = self.fromWire.expression if self.fromWire is not None else "value"
        if self.shared:
            if value != "value":
                out.line(f"value = {value}")
            out.line(f"out[{key!r}] = SHARED.setdefault(value, value)")
        else:
            out.line(f"out[{key!r}] = {value}")
        out.line(f"i += {advance}")

    def _unpackNibbles(self, out: "_Source", length: object) -> Tuple[str, object]:
        """
        Source for a BCD value of C{length} digits (C{"n"}, or a number):
        C{(its expression, the bytes it takes)}.
        """
        H = self.codec.view(None)
        if length == "n":
            out.line("x = 2 * i")
            with out.block("if n & 1:"):
                self._unpadNibbles(out, H, "n")
            with out.block("else:"):
                out.line(f"value = {H}[x:x + n]")
            return "value", "(n + 1) >> 1"
        if not self.maxLength & 1:
            return f"{H}[2 * i:2 * i + {self.maxLength}]", self.maxLength >> 1
        out.line("x = 2 * i")
        self._unpadNibbles(out, H, self.maxLength)
        return "value", (self.maxLength + 1) >> 1

    def _unpadNibbles(self, out: "_Source", H: str, n: Union[int, Literal["n"]]) -> None:
        # As pyiso8583: the left pad nibble if it is there, else the right one.
        left, right = self.pad
        after = "n + 1" if n == "n" else n + 1
        keyword = "if"
        if left:
            with out.block(f"if {H}[x] == {left!r}:"):
                out.line(f"value = {H}[x + 1:x + {after}]")
            keyword = "elif"
        if right:
            with out.block(f"{keyword} {H}[x + {n}] == {right!r}:"):
                out.line(f"value = {H}[x:x + {n}]")
            keyword = "elif"
        if keyword == "if":
            out.line("raise Fallback")
        else:
            with out.block("else:"):
                out.line("raise Fallback")


def _packMTI(codec: _Codec, fs: Mapping, out: "_Source") -> None:
    """
    Source packing C{value} into C{mti}.
    """
    if fs["data_enc"] == "b":
        with out.block("if value.__class__ is not str:"):
            out.line("raise Fallback")
        out.line("mti = a2b_hex(value)")
        size = 2
    else:
        text = codec.text("t", fs["data_enc"])
        if codec.asText:
            out.line("mti = value")
            if text.asciiOnly:
                with out.block("if not mti.isascii():"):
                    out.line("raise Fallback")
        else:
            out.line(f"mti = {text.encode('value')}")
        size = 4
    with out.block(f"if len(mti) != {size}:"):
        out.line("raise Fallback")


def _unpackMTI(codec: _Codec, fs: Mapping, out: "_Source") -> None:
    """
    Source reading the MTI into C{mti} and setting C{i} after it.
    """
    if fs["data_enc"] == "b":
        out.line(f"mti = {codec.view(None)}[0:4]")
        out.line("i = 2")
        return
    text = codec.text("t", fs["data_enc"])
    out.line(f"mti = {codec.view(text)}[0:4]")
    if text.asciiOnly:
        with out.block("if not mti.isascii():"):
            out.line("raise Fallback")
    out.line("i = 4")


@lru_cache(maxsize=None)
def _lengthTables(encoding: str, width: int, maxLength: int) -> Tuple[tuple, Dict[bytes, int]]:
    """
    For a length prefix of C{width} in C{encoding} (C{"b"}, C{"bcd"} or a
    text encoding), the prefix of each length pyiso8583 can write up to
    C{maxLength}, and the reverse: the lengths it reads from the canonical
    prefixes.  A length beyond either is an IndexError or KeyError in the
    compiled code, which hands the frame to the generic path.
    """
    prefixes = []
    for n in range(min(maxLength, MAX_TABLE) + 1):
        try:
            if encoding == "b":
                prefix = n.to_bytes(width, "big")
            elif encoding == "bcd":
                digits = "%0*d" % (2 * width, n)
                if len(digits) > 2 * width:
                    break
                prefix = a2b_hex(digits)
            else:
                prefix = ("%0*d" % (width, n)).encode(encoding)
                if len(prefix) > width:
                    break
        except OverflowError:
            break
        except (LookupError, UnicodeError):
            raise NotCompilable(f"length encoding {encoding!r}") from None
        prefixes.append(prefix)
    if len(prefixes) > MAX_TABLE:
        raise NotCompilable(f"a length prefix above {MAX_TABLE - 1}")
    return tuple(prefixes), {prefix: n for n, prefix in enumerate(prefixes)}


def _bytes(data: object) -> bytes:
    """
    A bytearray to unpack as bytes; anything else is for the generic path.
    """
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise Fallback()


def _int(fs: Mapping, name: str) -> int:
    value = fs.get(name)
    if not isinstance(value, int) or value < 0:
        raise NotCompilable(f"{name} {value!r}")
    return value


def _bitsOf(byte: int) -> range:
    """
    The field ids whose bits are in bitmap byte C{byte} (0-15).
    """
    return range(8 * byte + 1, 8 * byte + 9)


def _mask(fid: int) -> int:
    return 0x80 >> ((fid - 1) % 8)


class _Source:
    """
    Lines of Python source, indented by blocks.
    """

    def __init__(self) -> None:
        self._lines: List[str] = []
        self.indent = 0

    def line(self, text: str) -> None:
        self._lines.append("    " * self.indent + text)

    def extend(self, other: "_Source") -> None:
        self._lines.extend(other._lines)

    def block(self, header: str) -> "_Block":
        self.line(header)
        return _Block(self)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


class _Block:
    """
    An indented block; one left empty (e.g. the secondary bitmap's bytes of
    a spec with no field above 64) holds a C{pass}.
    """

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.start = len(source._lines)

    def __enter__(self) -> None:
        self.source.indent += 1

    def __exit__(self, *exc: object) -> None:
        if len(self.source._lines) == self.start:
            self.source.line("pass")
        self.source.indent -= 1


def generateSource(
    spec: Mapping[str, Mapping], toWire: Mapping[str, Transform], fromWire: Mapping[str, Transform]
) -> Tuple[str, str, Dict[str, object]]:
    """
    The source of C{pack} and C{unpack} for C{spec}, and the names they use.

    @raise NotCompilable: saying what in the spec the compiler does not handle.
    """
    try:
        codec = _Codec(spec, toWire, fromWire)
        return codec.packSource(), codec.unpackSource(), codec.namespace
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # A spec pyiso8583 itself would trip on; its generic path says how.
        raise NotCompilable(f"a malformed spec ({type(e).__name__}: {e})") from None


def compileCodec(
    name: str,
    spec: Mapping[str, Mapping],
    toWire: Mapping[str, Transform],
    fromWire: Mapping[str, Transform],
    packFallback: Callable[[Mapping[str, str]], bytes],
    unpackFallback: Callable[[bytes], dict],
) -> Tuple[Callable[[Mapping[str, str]], bytes], Callable[[bytes], dict]]:
    """
    Compile C{spec} (with the transforms applied before encoding and after
    decoding, by field id) into C{(pack, unpack)}.  Whatever they do not take
    exactly as pyiso8583 would goes to C{packFallback} or C{unpackFallback}.

    @raise NotCompilable: saying what in the spec the compiler does not handle.
    """
    packSource, unpackSource, namespace = generateSource(spec, toWire, fromWire)
    namespace["packFallback"] = packFallback
    namespace["unpackFallback"] = unpackFallback
    exec(compile(packSource, f"<muxpool packager {name}: pack>", "exec"), namespace)
    exec(compile(unpackSource, f"<muxpool packager {name}: unpack>", "exec"), namespace)
    # exec defined both, from the source generateSource wrote.
    return (
        cast(Callable[[Mapping[str, str]], bytes], namespace["pack"]),
        cast(Callable[[bytes], dict], namespace["unpack"]),
    )
