"""
L{SpecPackager}: message dicts <-> bytes with a pyiso8583 spec, through the
compiled codec when the spec allows it, else through pyiso8583 itself.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping, Optional

import iso8583
from zope.interface import implementer

from muxpool.interfaces import IPackager
from muxpool.iso.packagers._compiled import NotCompilable, compileCodec
from muxpool.iso.packagers._errors import PackError, UnpackError
from muxpool.iso.packagers._fieldclasses import Transform


@implementer(IPackager)
class SpecPackager:
    """
    Packs and unpacks message dicts (pyiso8583's form: C{"t"} the MTI,
    C{"p"} the primary bitmap, C{"1"} the secondary one, C{"2"}..C{"128"}
    the fields, binary fields as upper-case hex strings) with a pyiso8583
    spec: a user's own, used as is, or the one a
    L{muxpool.iso.packagers.Packager} builds from jPOS field classes, with its
    padding transforms.

    C{pack} and C{unpack} are the compiled codec
    (L{muxpool.iso.packagers.compileCodec}) when the compiler handles every field of
    the spec, else pyiso8583's generic encode and decode
    (L{packGeneric}, L{unpackGeneric}).  The compiled functions hand every
    message or frame they do not take exactly as pyiso8583 would to the
    generic ones, so both paths give the same bytes, dicts and errors.

    @ivar name: a name for logs and errors.
    @ivar spec: the pyiso8583 spec.
    @ivar toWire: field id -> L{Transform} applied to a value before it is
        encoded (jPOS's padding).
    @ivar fromWire: field id -> L{Transform} applied to a value after it is
        decoded.
    @ivar binaryFields: ids of fields whose value is raw bytes (hex), not
        BCD digits; they are hidden entirely when a message is logged, and
        never copied into a decline.
    @ivar pack: C{pack(message) -> bytes}; raises L{PackError} naming the
        field.  The message is not modified.
    @ivar unpack: C{unpack(data) -> dict}; raises L{UnpackError} naming the
        field and byte offset.
    @ivar notCompiled: C{None} when C{pack} and C{unpack} are compiled, else
        why the generic path is used.
    """

    pack: Callable[[Mapping[str, str]], bytes]
    unpack: Callable[[bytes], dict]

    def __init__(
        self,
        name: str,
        spec: Mapping[str, dict],
        toWire: Optional[Mapping[str, Transform]] = None,
        fromWire: Optional[Mapping[str, Transform]] = None,
        binaryFields: Optional[Iterable[str]] = None,
    ) -> None:
        self.name = name
        self.spec = dict(spec)
        self.toWire: Dict[str, Transform] = dict(toWire or {})
        self.fromWire: Dict[str, Transform] = dict(fromWire or {})
        if binaryFields is None:
            # Raw bytes, not BCD digits (jPOS's IFB_NUMERIC and LLNUM: a
            # STAN or an amount reads as digits) nor a transformed amount.
            binaryFields = (
                k
                for k, v in self.spec.items()
                if k.isdigit()
                and v.get("data_enc") == "b"
                and v.get("len_count") != "nibbles"
                and k not in self.fromWire
            )
        self.binaryFields = frozenset(binaryFields)
        try:
            self.pack, self.unpack = compileCodec(
                name,
                self.spec,
                self.toWire,
                self.fromWire,
                self.packGeneric,
                self.unpackGeneric,
            )
            self.notCompiled: Optional[str] = None
        except NotCompilable as e:
            self.pack, self.unpack = self.packGeneric, self.unpackGeneric
            self.notCompiled = str(e)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def packGeneric(self, message: Mapping[str, str]) -> bytes:
        """
        Pack C{message} (not modified) with pyiso8583's C{encode}: C{"t"}
        and the field ids are packed, other keys (C{"p"}, C{"1"}, C{"65"},
        C{"h"}, anything not a number) ignored.

        @raise PackError: naming the field that could not be packed.
        """
        doc = {}
        toWire = self.toWire
        spec = self.spec
        for key, value in message.items():
            if not isinstance(key, str):
                raise PackError("?", f"field ids must be str, not {type(key).__name__}")
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
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise PackError("?", type(e).__name__) from None
        return bytes(data)

    def unpackGeneric(self, data: bytes) -> dict:
        """
        Unpack C{data} with pyiso8583's C{decode}.

        @raise UnpackError: naming the field and offset (never the bytes).
        """
        if not isinstance(data, (bytes, bytearray)):
            raise UnpackError("?", 0, f"data must be bytes, not {type(data).__name__}")
        try:
            doc, _ = iso8583.decode(data, self.spec)
        except iso8583.DecodeError as e:
            raise UnpackError(e.field, e.pos, e.msg) from None
        except KeyError as e:
            # A bit is set for a field the spec does not define.
            field = str(e.args[0]) if e.args else "?"
            raise UnpackError(
                field, self._bitmapOffset(field), f"not defined in packager {self.name}"
            ) from None
        except (ValueError, TypeError, IndexError) as e:
            raise UnpackError("?", 0, type(e).__name__) from None
        for key, fn in self.fromWire.items():
            if key in doc:
                try:
                    doc[key] = fn(doc[key])
                except ValueError:
                    raise UnpackError(key, 0, "value does not decode") from None
        return doc

    def _bitmapOffset(self, field: str) -> int:
        """
        The offset of the bitmap that announces C{field} (0 if unknown).
        """
        spec = self.spec
        if not field.isdigit() or spec.get("h", {}).get("max_len", 0) > 0:
            return 0
        offset = 2 if spec["t"]["data_enc"] == "b" else 4
        for bitmap in range((int(field) - 1) // 64):
            offset += 8 if spec["p" if bitmap == 0 else "1"]["data_enc"] == "b" else 16
        return offset
