"""
L{Packager}: a packager made of jPOS field classes (ISO87A, ISO87B, a
GenericPackager XML file), byte-exact with jPOS.
"""

from __future__ import annotations

from typing import Dict, Mapping, cast

from muxpool.iso.packagers._errors import PackagerConfigError
from muxpool.iso.packagers._fieldclasses import (
    BITMAP_CLASSES,
    FIELD_CLASSES,
    LATIN1,
    MTI_CLASSES,
    FieldDef,
    Transform,
    fieldSpec,
    shortClass,
)
from muxpool.iso.packagers._specpackager import SpecPackager


class Packager(SpecPackager):
    """
    A L{SpecPackager} whose spec and padding transforms come from jPOS field
    definitions, each a class of L{FIELD_CLASSES}.

    @ivar fields: field id -> (jPOS class, length, pad, name).
    """

    def __init__(self, name: str, fields: Mapping[int, FieldDef], source: str = "") -> None:
        self.fields: Dict[int, FieldDef] = {
            fid: cast(FieldDef, (shortClass(d[0]),) + tuple(d[1:])) for fid, d in fields.items()
        }
        where = source or name
        spec: Dict[str, dict] = {"h": fieldSpec(LATIN1, LATIN1, 0, 0, "Header")}
        toWire: Dict[str, Transform] = {}
        fromWire: Dict[str, Transform] = {}
        binary = set()
        for fid, (cls, length, pad, desc) in sorted(self.fields.items()):
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
                spec["t"] = fieldSpec(MTI_CLASSES[cls], LATIN1, 0, 4, desc)
                continue
            if fid == 1:
                if cls not in BITMAP_CLASSES:
                    raise PackagerConfigError(
                        f"{where}: field 1: unsupported bitmap class {cls!r} "
                        f"(known: {', '.join(sorted(BITMAP_CLASSES))})"
                    )
                enc, size = BITMAP_CLASSES[cls]
                spec["p"] = fieldSpec(enc, LATIN1, 0, size, "Bitmap, Primary")
                spec["1"] = fieldSpec(enc, LATIN1, 0, size, "Bitmap, Secondary")
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
            fieldspec, pack, unpack = builder(length, pad, desc)
            key = str(fid)
            spec[key] = fieldspec
            if pack is not None:
                toWire[key] = pack
            if unpack is not None:
                fromWire[key] = unpack
            if cls.endswith("BINARY"):  # raw bytes; a BCD number reads as digits
                binary.add(key)
        for required, what in (("t", "field 0 (MTI)"), ("p", "field 1 (bitmap)")):
            if required not in spec:
                raise PackagerConfigError(f"{where}: {what} is not defined")
        SpecPackager.__init__(self, name, spec, toWire, fromWire, binary)
