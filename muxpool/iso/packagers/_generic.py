"""
jPOS GenericPackager XML files (C{<isopackager>} of C{<isofield>}) ->
L{Packager}.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Dict

from muxpool._config import yesNo
from muxpool.iso.packagers._errors import PackagerConfigError
from muxpool.iso.packagers._fieldclasses import FieldDef
from muxpool.iso.packagers._packager import Packager


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
