"""
Timers that are cancelled and forgotten in one step.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.interfaces import IDelayedCall


def cancelTimer(timer: Optional[IDelayedCall]) -> Optional[IDelayedCall]:
    """
    Cancel C{timer} if it is still pending.

    @return: None, always, so the holder forgets it in the same line:
        C{self._timer = cancelTimer(self._timer)}.
    """
    if timer is not None and timer.active():
        timer.cancel()
    return None
