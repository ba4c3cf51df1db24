"""
jPOS's ISO87APackager and ISO87BPackager as field tables: field id ->
C{(class, length, pad, name)}, classes from L{muxpool.iso.packagers.FIELD_CLASSES}.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

from muxpool.iso.packagers._fieldclasses import FieldDef


def _table(rows: Iterable[Tuple[str, int]], pad: Optional[bool] = None) -> Dict[int, FieldDef]:
    out = {}
    for fid, (cls, length) in enumerate(rows):
        if cls:
            out[fid] = (cls, length, pad, f"Field {fid}")
    return out


def _iso87(
    numeric: str,
    bitmap: str,
    llnum: str,
    llchar: str,
    lllchar: str,
    binary: str,
    amount: str,
    pad: Optional[bool],
) -> Dict[int, FieldDef]:
    """
    The ISO 8583:1987 layout jPOS's ISO87A and ISO87B packagers share; they
    differ only in which class encodes each kind of field.
    """
    n, c = numeric, "IF_CHAR"
    rows = (
        [(n, 4), (bitmap, 16), (llnum, 19), (n, 6), (n, 12), (n, 12), (n, 12), (n, 10)]
        + [(n, 8)] * 3
        + [(n, 6), (n, 6)]
        + [(n, 4)] * 6
        + [(n, 3)] * 6
        + [(n, 2), (n, 2), (n, 1)]
        + [(amount, 9)] * 4
        + [(llnum, 11), (llnum, 11), (llchar, 28), (llnum, 37), (lllchar, 104)]
        + [(c, 12), (c, 6), (c, 2), (c, 3), (c, 8), (c, 15), (c, 40)]
        + [(llchar, 25), (llchar, 76)]
        + [(lllchar, 999)] * 3
        + [(c, 3)] * 3
        + [(binary, 8), (n, 16), (lllchar, 120)]
        + [(lllchar, 999)] * 9
        + [(binary, 8), (binary, 1), (n, 1), (n, 2), (n, 3), (n, 3), (n, 3), (n, 4), (n, 4), (n, 6)]
        + [(n, 10)] * 8
        + [(n, 12)] * 4
        + [(n, 16)] * 4
        + [(n, 42)]
        + [(c, 1), (c, 2), (c, 6), (c, 7), (c, 42), (binary, 16), (amount, 17), (c, 25)]
        + [(llnum, 11), (llnum, 11), (llchar, 17), (llchar, 28), (llchar, 28), (lllchar, 100)]
        + [(lllchar, 999)] * 23
        + [(binary, 8)]
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
    "IFA_NUMERIC",
    "IFA_BITMAP",
    "IFA_LLNUM",
    "IFA_LLCHAR",
    "IFA_LLLCHAR",
    "IFA_BINARY",
    "IFA_AMOUNT",
    None,
)
ISO87B_FIELDS = _iso87(
    "IFB_NUMERIC",
    "IFB_BITMAP",
    "IFB_LLNUM",
    "IFB_LLCHAR",
    "IFB_LLLCHAR",
    "IFB_BINARY",
    "IFB_AMOUNT",
    True,
)
