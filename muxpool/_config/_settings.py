"""
Settings as descriptors write them: yes/no, milliseconds, field lists.

One parser for each, so a descriptor, a packager file and the command line
read a setting the same way.
"""

from __future__ import annotations

from typing import Optional, Tuple, TypeVar, Union, overload

T = TypeVar("T")

#: The words that mean yes (any case); anything else given means no.
YES = frozenset({"true", "yes", "1", "on"})


def yesNo(value: object, default: T) -> Union[bool, T]:
    """
    A yes/no setting: C{true}, C{yes}, C{1} or C{on} (any case) is yes,
    anything else given is no; C{default} when it is not given (None).
    """
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in YES


@overload
def milliseconds(text: Optional[str], default: float) -> float: ...
@overload
def milliseconds(text: Optional[str], default: None = None) -> Optional[float]: ...
def milliseconds(text: Optional[str], default: Optional[float] = None) -> Optional[float]:
    """
    A duration given in milliseconds (jPOS's unit), in seconds; C{default}
    (already in seconds) when C{text} is None or empty.

    @raise ValueError: C{text} is not a number.
    """
    if text is None or not text.strip():
        return default
    return float(text.strip()) / 1000.0


def parseFieldList(text: str) -> Tuple[str, ...]:
    """
    C{"41, 11"} (jPOS's comma or space separated list) -> C{("41", "11")}.
    """
    return tuple(part for part in text.replace(",", " ").split() if part)
