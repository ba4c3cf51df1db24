"""
How long to wait before trying again, after failures in a row.
"""

from typing import Callable, Optional


def backoffDelay(attempt: int, base: float, cap: float, factor: float,
                 jitter: Optional[Callable[[], float]] = None) -> float:
    """
    The delay before retry number C{attempt} (1 after the first failure):
    C{base}, then growing by C{factor} each time up to C{cap}.  With
    C{jitter} (a random number in [0, 1)), varied by up to 10% either way,
    so many clients that failed together do not retry together.
    """
    delay = min(base * factor ** max(0, attempt - 1), cap)
    if jitter is not None:
        delay *= 1 + 0.2 * (jitter() - 0.5)
    return delay
