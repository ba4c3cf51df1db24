"""
Packagers: a message dict <-> the bytes jPOS's packagers write.

A packager is a pyiso8583 spec plus, for the few jPOS field classes
pyiso8583 cannot express alone, string transforms applied before encoding and
after decoding.  Every packager here, built-in or loaded from a jPOS
GenericPackager XML file, is made from one table of jPOS field classes
(L{FIELD_CLASSES}); ISO87A and ISO87B are lists of C{(class, length)}
(L{ISO87A_FIELDS}, L{ISO87B_FIELDS}).  Each spec is compiled once into
specialised pack and unpack functions (L{compileCodec}); pyiso8583's generic
encode and decode remain for what the compiler does not handle, and to
describe every error.

Packagers are found by name (L{getPackager}): the jPOS class name, a short
name, or a name a user registered with L{registerPackager}.
"""

from muxpool.iso.packagers._compiled import NotCompilable, compileCodec
from muxpool.iso.packagers._errors import PackagerConfigError, PackError, UnpackError
from muxpool.iso.packagers._fieldclasses import (
    BITMAP_CLASSES,
    FIELD_CLASSES,
    MTI_CLASSES,
    FieldDef,
    Transform,
)
from muxpool.iso.packagers._generic import loadGenericPackager
from muxpool.iso.packagers._iso87 import ISO87A_FIELDS, ISO87B_FIELDS
from muxpool.iso.packagers._names import getPackager, registerPackager
from muxpool.iso.packagers._packager import Packager
from muxpool.iso.packagers._shared import SHARED_FIELDS, SHARED_MAX
from muxpool.iso.packagers._specpackager import SpecPackager

__all__ = [
    "BITMAP_CLASSES",
    "FIELD_CLASSES",
    "MTI_CLASSES",
    "FieldDef",
    "ISO87A_FIELDS",
    "ISO87B_FIELDS",
    "NotCompilable",
    "PackError",
    "PackagerConfigError",
    "Packager",
    "SpecPackager",
    "Transform",
    "UnpackError",
    "compileCodec",
    "SHARED_MAX",
    "SHARED_FIELDS",
    "getPackager",
    "loadGenericPackager",
    "registerPackager",
]
