"""
Sample messages: what C{muxpool send} and C{muxpool load}, the benchmarks
and the test kit send (test card data only).
"""

from __future__ import annotations

import time
from typing import Dict, Optional

from muxpool.iso._messages import ECHO

TEST_PAN = "4761739001010119"


def defaultFields(mti: str, stan: int, now: Optional[float] = None) -> Dict[str, str]:
    """
    Sensible fields for an 0200 (a purchase) or an 0800 (an echo); other
    MTIs get only the key fields.
    """
    t = time.gmtime(time.time() if now is None else now)
    fields = {"t": mti, "7": time.strftime("%m%d%H%M%S", t), "11": "%06d" % (stan % 1000000)}
    if mti[:2] == "08":
        fields["70"] = ECHO
    else:
        fields.update(
            {
                "3": "000000",
                "4": "000000001000",
                "12": time.strftime("%H%M%S", t),
                "13": time.strftime("%m%d", t),
                "22": "051",
                "41": "TERM0001",
                "42": "MERCHANT0000001",
                "49": "840",
            }
        )
        if mti[:2] in ("01", "02"):
            fields["2"] = TEST_PAN
    return fields


def sampleRequest(i: int, mti: str = "0200") -> Dict[str, str]:
    """
    The C{i}th request of a run: unique key (11 and 41) for i < 10**13.
    """
    return {
        "t": mti,
        "3": "000000",
        "4": "%012d" % (i % 100000),
        "11": "%06d" % (i % 1000000),
        "41": "T%07d" % (i // 1000000),
    }
