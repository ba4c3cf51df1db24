"""
Card data out of logs: C{muxpool.masking.maskMessage} renders a message for
a log line with PANs masked and tracks, PIN blocks, ICC data and binary
fields hidden.  It lives in L{muxpool.iso}; this name is kept for the code
and the docs that use it.
"""

from muxpool.iso import (
    HIDDEN,
    PARTIAL,
    binaryFieldsOf,
    describeForReversal,
    maskMessage,
    maskValue,
)

__all__ = ["HIDDEN", "PARTIAL", "binaryFieldsOf", "describeForReversal", "maskMessage", "maskValue"]
