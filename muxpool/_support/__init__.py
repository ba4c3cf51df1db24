"""
Private helpers the services share, on Twisted: calls into user code
(L{describeCode}, L{describeError}, L{notAMessage}); observer and waiter
lists that survive their members; a ready state that can be waited on;
log lines at a bounded rate; one deadline timer for many items; retry
backoff; the default reactor; timers cancelled and forgotten in one step.
"""

from muxpool._support._backoff import backoffDelay
from muxpool._support._deadlines import DeadlineQueue, Entry
from muxpool._support._observers import NO_KEYWORDS, Observers, Waiters
from muxpool._support._ratelimit import RateLimiter
from muxpool._support._reactor import defaultReactor
from muxpool._support._readiness import Readiness
from muxpool._support._timers import cancelTimer
from muxpool._support._usercode import describeCode, describeError, notAMessage

__all__ = [
    "DeadlineQueue",
    "Entry",
    "NO_KEYWORDS",
    "Observers",
    "RateLimiter",
    "Readiness",
    "Waiters",
    "backoffDelay",
    "cancelTimer",
    "defaultReactor",
    "describeCode",
    "describeError",
    "notAMessage",
]
