"""
How many connections a process can hold: its file descriptor limit, and
the share of it a server or the admin API takes when not told.
"""

from __future__ import annotations

from typing import Optional

#: File descriptors kept for what is not an inbound session: channels to
#: issuers, the deploy folder and the files it reads, logs, the admin API.
RESERVED_DESCRIPTORS = 128

#: What a server takes when the limit is not known (or unlimited).
UNLIMITED_SESSIONS = 10000


def descriptorLimit() -> Optional[int]:
    """
    The process's soft limit on open file descriptors; None if unknown or
    unlimited.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def defaultSessionLimit() -> int:
    """
    How many sessions a server holds at once when its descriptor says
    nothing (no C{maxSessions}): half of what the file descriptor limit
    leaves after L{RESERVED_DESCRIPTORS}, so sessions alone never run the
    process out of descriptors (which would fail every file it opens and
    every connection it makes, not only that server's).
    """
    limit = descriptorLimit()
    if limit is None:
        return UNLIMITED_SESSIONS
    return max(1, (limit - RESERVED_DESCRIPTORS) // 2)


def defaultAdminConnections() -> int:
    """
    How many connections the admin API holds at once: a few operators and
    a Prometheus scraper need far fewer than this.
    """
    return min(64, defaultSessionLimit())
