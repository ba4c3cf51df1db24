"""
L{KeyBuilder}: the key that pairs a response with its request, built
exactly as jPOS's QMUX builds it.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

from muxpool.errors import MissingKey
from muxpool.iso import maskValue

DEFAULT_KEY = ("41", "11")
NO_MAP = "0123456789"
DEFAULT_MTI_MAPPING = (NO_MAP, NO_MAP, "0022446689")
#: The C{<key>} token that puts the message header into the key (jPOS).
HEADER_TOKEN = "header"


class KeyBuilder:
    """
    Builds the key that pairs a response with its request, as jPOS's QMUX:
    the MTI through C{mtimapping}, the header if a key lists C{header},
    then the key fields' values (field 11 zero-padded to 6, or 12 for 2003
    MTIs; field 41 trimmed and zero-padded to 16).  C{overrides} maps an
    MTI prefix (2 digits), optionally C{"prefix:pcode"}, to other key
    fields.
    """

    def __init__(
        self,
        fields: Sequence[str] = DEFAULT_KEY,
        overrides: Optional[Mapping[str, Sequence[str]]] = None,
        mtiMapping: Optional[Sequence[str]] = None,
    ) -> None:
        # As jPOS, "header" in any key list puts the header in every key.
        self.headerIsKey = any(
            f.lower() == HEADER_TOKEN
            for f in list(fields) + [f for v in (overrides or {}).values() for f in v]
        )
        self.fields = _withoutHeader(fields)
        self.overrides = {k: _withoutHeader(v) for k, v in (overrides or {}).items()}
        mapping = tuple(mtiMapping or ())
        if len(mapping) != 3 or any(len(m) != 10 for m in mapping):
            mapping = DEFAULT_MTI_MAPPING
        self.mtiMapping = mapping
        self._mapped: Dict[str, str] = {}

    def mapMTI(self, mti: str) -> str:
        """
        C{mti} through the mapping (once per MTI: a switch sees few).
        """
        mapped = self._mapped.get(mti)
        if mapped is None:
            mapped = self._mapMTI(mti)
            if len(self._mapped) < 1024:
                self._mapped[mti] = mapped
        return mapped

    def _mapMTI(self, mti: str) -> str:
        if len(mti) < 4:
            mti = mti.rjust(4, "0")
        if len(mti) != 4:
            return ""
        out = []
        for i, table in enumerate(self.mtiMapping):
            c = ord(mti[i]) - 48
            if 0 <= c < 10:
                out.append(table[c])
        return "".join(out)

    def fieldsFor(self, message: Mapping[str, str]) -> Tuple[str, ...]:
        if not self.overrides:
            return self.fields
        mti = message.get("t", "")
        prefix = mti[:2]
        pcode = (message.get("3") or "").strip()
        if pcode:
            found = self.overrides.get(f"{prefix}:{pcode}")
            if found is not None:
                return found
        return self.overrides.get(prefix, self.fields)

    def key(self, message: Mapping[str, str]) -> str:
        """
        @raise MissingKey: if the message has none of the key fields.
        """
        mti = message.get("t", "")
        mapped = self._mapped.get(mti)  # mapMTI's cache, read here: a key per message
        parts = [mapped if mapped is not None else self.mapMTI(mti)]
        if self.headerIsKey and message.get("h"):
            parts.append(message["h"].upper())
        found = False
        for f in self.fieldsFor(message) if self.overrides else self.fields:
            value = message.get(f)
            if value is None:
                continue
            if f == "11":
                trimmed = value.strip()
                width = 12 if mti[:1] == "2" else 6
                if len(trimmed) < width:
                    value = trimmed.rjust(width, "0")
            elif f == "41":
                value = value.strip().rjust(16, "0")
            parts.append(value)
            found = True
        if not found:
            raise MissingKey(
                f"none of the key fields {', '.join(self.fieldsFor(message))} "
                f"is in the {mti or 'MTI-less'} message - not sending"
            )
        return ".".join(parts)

    def describe(self, message: Mapping[str, str]) -> str:
        """
        The key as a log-safe string (card fields masked).
        """
        return " ".join(
            f"{f}={maskValue(f, message[f])}" for f in self.fieldsFor(message) if f in message
        )


def _withoutHeader(fields: Sequence[str]) -> Tuple[str, ...]:
    return tuple(f for f in fields if f.lower() != HEADER_TOKEN)
