"""
Small facts about ISO 8583 messages that several layers need.
"""

import time
from typing import Dict, Optional

#: Field 70 of the network messages (0800) a link or a server sends itself.
SIGN_ON = "001"
SIGN_OFF = "002"
ECHO = "301"


def isResponse(mti: str) -> bool:
    """
    jPOS's ISOMsg.isResponse: the third MTI digit is odd.
    """
    return len(mti) >= 3 and mti[2] in "13579"


def isMTI(mti: str) -> bool:
    """
    Whether C{mti} is a message type indicator: four ASCII digits.
    """
    return len(mti) == 4 and mti.isascii() and mti.isdigit()


def isRequest(mti: str) -> bool:
    """
    Whether C{mti} is a request's: four digits, the third even.
    """
    return isMTI(mti) and not isResponse(mti)


def responseMTI(mti: str) -> str:
    """
    jPOS's setResponseMTI: the request's MTI with its third digit made odd.
    """
    if len(mti) < 4 or not mti.isascii() or not mti[2].isdigit():
        raise ValueError(f"cannot make a response MTI from {mti!r}")
    return mti[:2] + str(int(mti[2]) | 1) + mti[3:]


def networkRequest(code: str, stan: str, now: Optional[float]) -> Dict[str, str]:
    """
    The 0800 that a link or a server sends itself (echo, sign-on, sign-off:
    70=C{code}), with 11 (C{stan}) and, unless C{now} is None, 7
    (transmission date and time, GMT, MMDDhhmmss at C{now}); its 0810 is
    matched on 11 (and 70, if it carries one).
    """
    message = {"t": "0800", "11": stan, "70": code}
    if now is not None:
        message["7"] = time.strftime("%m%d%H%M%S", time.gmtime(now))
    return message


class Stans:
    """
    System trace audit numbers (field 11) for the messages one sends
    itself: 000001 to 999999, then round again.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        self._last = self._last % 999999 + 1
        return "%06d" % self._last
