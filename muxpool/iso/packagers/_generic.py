"""
jPOS GenericPackager XML files (C{<isopackager>} of C{<isofield>}) ->
L{Packager}.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
import xml.parsers.expat
from typing import Dict

from muxpool._config import yesNo
from muxpool.iso.packagers._errors import PackagerConfigError
from muxpool.iso.packagers._fieldclasses import FieldDef
from muxpool.iso.packagers._packager import Packager

#: The largest GenericPackager file read, in bytes (jPOS's are about 20 KB).
MAX_PACKAGER_BYTES = 1024 * 1024


def _refuseEntities(path: str, data: bytes) -> None:
    """
    @raise PackagerConfigError: C{data} declares an entity (an entity bomb
        would expand without bound).  jPOS's DOCTYPE line is fine: an
        external DTD is never read.
    """

    def refuse(*args: object) -> None:
        raise PackagerConfigError(
            f"{path}: an entity declaration is not allowed in a packager file"
        )

    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError:
        pass  # ElementTree says what is malformed


def loadGenericPackager(path: str) -> Packager:
    """
    Build a L{Packager} from a jPOS GenericPackager XML file
    (C{<isopackager>} with C{<isofield id length name class pad>}), of at
    most L{MAX_PACKAGER_BYTES} and declaring no entity.

    @raise PackagerConfigError: naming the file, the field and the problem.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PACKAGER_BYTES + 1)
    except OSError as e:
        raise PackagerConfigError(f"{path}: cannot read packager XML: {e}") from None
    if len(data) > MAX_PACKAGER_BYTES:
        raise PackagerConfigError(
            f"{path}: larger than the {MAX_PACKAGER_BYTES // 1024} KiB a packager file may be"
        )
    _refuseEntities(path, data)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise PackagerConfigError(f"{path}: cannot read packager XML: {e}") from None
    if root.tag != "isopackager":
        raise PackagerConfigError(f"{path}: root element is <{root.tag}>, expected <isopackager>")
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
            fid = int(fid_text or "")
        except (TypeError, ValueError):
            raise PackagerConfigError(f"{path}: field {fid_text!r}: id is not a number") from None
        if fid in fields:
            raise PackagerConfigError(f"{path}: field {fid}: defined twice")
        cls = element.get("class")
        if not cls:
            raise PackagerConfigError(f"{path}: field {fid}: no class attribute")
        length_text = element.get("length")
        try:
            length = int(length_text or "")
        except (TypeError, ValueError):
            raise PackagerConfigError(f"{path}: field {fid}: bad length {length_text!r}") from None
        fields[fid] = (
            cls,
            length,
            yesNo(element.get("pad"), None),
            element.get("name", f"Field {fid}"),
        )
    return Packager(os.path.basename(path), fields, source=path)
