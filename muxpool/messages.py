"""
Small facts about ISO 8583 messages that several layers need.
"""

from typing import Tuple


def isResponse(mti: str) -> bool:
    """
    jPOS's ISOMsg.isResponse: the third MTI digit is odd.
    """
    return len(mti) >= 3 and mti[2] in "13579"


def responseMTI(mti: str) -> str:
    """
    jPOS's setResponseMTI: the request's MTI with its third digit made odd.
    """
    if len(mti) < 4 or not mti[2].isdigit():
        raise ValueError(f"cannot make a response MTI from {mti!r}")
    return mti[:2] + str(int(mti[2]) | 1) + mti[3:]


def parseFieldList(text: str) -> Tuple[str, ...]:
    """
    C{"41, 11"} (jPOS's comma/space separated list) -> C{("41", "11")}.
    """
    return tuple(part for part in text.replace(",", " ").split() if part)
