"""
Packagers: a message dict <-> the bytes jPOS's packagers write.

A packager is a pyiso8583 spec plus, for the few jPOS field classes
pyiso8583 cannot express alone, string transforms applied before encoding and
after decoding.  Every packager here, built-in or loaded from a jPOS
GenericPackager XML file, is made from one table of jPOS field classes
(L{fieldclasses}); ISO87A and ISO87B are lists of C{(class, length)}
(L{iso87}).  Each spec is compiled once into specialised pack and unpack
functions (L{compiled}); pyiso8583's generic encode and decode remain for
what the compiler does not handle, and to describe every error.

Packagers are found by name (L{getPackager}): the jPOS class name, a short
name, or a name a user registered with L{registerPackager}.

The modules: L{errors}, L{fieldclasses} (the jPOS field-class table),
L{iso87} (the ISO87A/B tables), L{specpackager} (a packager of a pyiso8583
spec), L{packager} (one of jPOS field classes), L{compiled} (the compiler),
L{generic} (GenericPackager XML), L{registry} (names).
"""

from muxpool.packagers.errors import PackagerConfigError, PackError, UnpackError
from muxpool.packagers.fieldclasses import (
    BITMAP_CLASSES,
    FIELD_CLASSES,
    MTI_CLASSES,
    FieldDef,
    Transform,
)
from muxpool.packagers.generic import loadGenericPackager
from muxpool.packagers.iso87 import ISO87A_FIELDS, ISO87B_FIELDS
from muxpool.packagers.packager import Packager
from muxpool.packagers.registry import getPackager, registerPackager
from muxpool.packagers.specpackager import SpecPackager

__all__ = [
    "BITMAP_CLASSES", "FIELD_CLASSES", "MTI_CLASSES", "FieldDef", "Transform",
    "ISO87A_FIELDS", "ISO87B_FIELDS", "PackError", "PackagerConfigError",
    "UnpackError", "Packager", "SpecPackager", "getPackager", "loadGenericPackager",
    "registerPackager",
]
