"""
Private helpers every layer uses: not part of muxpool's API.

Calls into user code (L{describeCode}, L{describeError}, L{notAMessage},
L{importNamed}); observer and waiter lists that survive their members;
a ready state that can be waited on; log lines at a bounded rate; one
deadline timer for many items; retry backoff; file stamps; settings as
descriptors write them; endpoint descriptions; the default reactor; timers.
"""

from muxpool._support._backoff import backoffDelay
from muxpool._support._config import milliseconds, parseFieldList, yesNo
from muxpool._support._deadlines import DeadlineQueue, Entry
from muxpool._support._endpoints import (
    BACKLOG,
    Endpoint,
    hostPort,
    parseEndpoint,
    tcpEndpoint,
    withPort,
)
from muxpool._support._filestamps import Stamp, fileStamp
from muxpool._support._imports import NoSuchModule, NoSuchName, importNamed
from muxpool._support._limits import defaultAdminConnections, defaultSessionLimit
from muxpool._support._observers import NO_KEYWORDS, Observers, Waiters
from muxpool._support._ratelimit import RateLimiter
from muxpool._support._reactor import defaultReactor
from muxpool._support._readiness import Readiness
from muxpool._support._timers import cancelTimer
from muxpool._support._usercode import describeCode, describeError, notAMessage

__all__ = [
    "BACKLOG",
    "DeadlineQueue",
    "Endpoint",
    "Entry",
    "NO_KEYWORDS",
    "NoSuchModule",
    "NoSuchName",
    "Observers",
    "RateLimiter",
    "Readiness",
    "Stamp",
    "Waiters",
    "backoffDelay",
    "cancelTimer",
    "defaultAdminConnections",
    "defaultReactor",
    "defaultSessionLimit",
    "describeCode",
    "describeError",
    "fileStamp",
    "hostPort",
    "importNamed",
    "milliseconds",
    "notAMessage",
    "parseEndpoint",
    "parseFieldList",
    "tcpEndpoint",
    "withPort",
    "yesNo",
]
