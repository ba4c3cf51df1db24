"""
Packagers by name: jPOS class names, short names, names users registered,
GenericPackager files, dotted paths.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Mapping, Optional, Union

from muxpool._config import fileStamp, importNamed
from muxpool.interfaces import IPackager
from muxpool.iso.packagers._errors import PackagerConfigError
from muxpool.iso.packagers._generic import loadGenericPackager
from muxpool.iso.packagers._iso87 import ISO87A_FIELDS, ISO87B_FIELDS
from muxpool.iso.packagers._packager import Packager
from muxpool.iso.packagers._specpackager import SpecPackager

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
_registered: Dict[str, IPackager] = {}
_cache: Dict[str, Packager] = {}


def registerPackager(name: str, packager: Union[IPackager, Mapping[str, dict]]) -> None:
    """
    Make C{packager} (an L{IPackager}, or a pyiso8583 spec dict) known as
    C{name} to L{getPackager} and to descriptors.
    """
    if isinstance(packager, Mapping):
        packager = SpecPackager(name, packager)
    if not IPackager.providedBy(packager):
        raise TypeError(f"{packager!r} does not provide IPackager")
    _registered[name] = packager


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
        # Keyed by the file's stamp too: an edited file is read again (a
        # redeploy after editing it gets the new fields).
        key = f"generic:{os.path.abspath(config)}:{fileStamp(config)}"
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
        try:
            obj = importNamed(name)
        except LookupError:
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
