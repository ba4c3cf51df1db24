"""
Whether a file changed since it was read: what the deploy folder, the
workers' parent and the GenericPackager cache each ask.
"""

import os
from typing import Optional, Tuple

#: What says a file changed: its modification time (ns) and size.
Stamp = Tuple[int, int]


def fileStamp(path: str) -> Optional[Stamp]:
    """
    C{path}'s L{Stamp}; None if it is gone.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
