"""
How long to wait before trying again, after failures in a row.
"""

from typing import Callable, Optional

from twisted.application.internet import backoffPolicy


def backoffDelay(
    attempt: int,
    base: float,
    cap: float,
    factor: float,
    jitter: Optional[Callable[[], float]] = None,
) -> float:
    """
    The delay before retry number C{attempt} (1 after the first failure):
    C{base}, then growing by C{factor} each time up to C{cap}.  With
    C{jitter} (a random number in [0, 1)), varied by up to 10% either way,
    so many clients that failed together do not retry together.
    """
    # Twisted's policy caps the exponent (no float overflow after many
    # failures); its jitter adds up to a second, ours varies by a share.
    delay = backoffPolicy(base, cap, factor, jitter=lambda: 0)(max(0, attempt - 1))
    if jitter is not None:
        delay *= 1 + 0.2 * (jitter() - 0.5)
    return delay
