"""
Log lines at a bounded rate.

A persistent fault (a MUX that does not exist, a peer sending garbage, a
link that is down) produces the same error for every request.  One line per
request would drown the log and cost CPU exactly when the switch is under
stress; L{RateLimiter} lets the first line of each kind through, then at
most one per interval, each saying how many it stood for.

Lines an operator must act on one by one (an outcome unknown that may need
a reversal, an answer that could not be delivered) are never limited.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Hashable, Optional, Tuple

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime


class RateLimiter:
    """
    At most one line per C{interval} seconds for each key.

    @param clock: anything with C{seconds()} (a reactor, a C{task.Clock});
        the monotonic clock when None.
    @param keys: how many distinct keys are remembered (oldest forgotten
        first), so memory stays bounded whatever the keys are.
    """

    def __init__(
        self, interval: float = 10.0, clock: Optional[IReactorTime] = None, keys: int = 1024
    ) -> None:
        self.interval = interval
        self._now: Callable[[], float] = clock.seconds if clock is not None else time.monotonic
        self._keys = keys
        self._state: "OrderedDict[Hashable, Tuple[float, int]]" = OrderedDict()

    def allow(self, key: Hashable) -> Optional[int]:
        """
        Whether a line for C{key} may be written now.

        @return: None to stay silent; otherwise how many lines for C{key}
            were suppressed since the last one written.
        """
        now = self._now()
        state = self._state.get(key)
        if state is not None and now - state[0] < self.interval:
            self._state[key] = (state[0], state[1] + 1)
            return None
        suppressed = state[1] if state is not None else 0
        self._state[key] = (now, 0)
        self._state.move_to_end(key)
        if len(self._state) > self._keys:
            self._state.popitem(last=False)
        return suppressed

    def emit(self, method: Callable[..., Any], key: Hashable, format: str, **fields: Any) -> bool:
        """
        Call the logger C{method} (C{log.warn}, ...) with C{format} if
        allowed; the line then ends with how many similar lines were not
        written since the last one.

        @return: whether it was written.
        """
        suppressed = self.allow(key)
        if suppressed is None:
            return False
        if suppressed:
            format += " ({suppressed} more like this in the last {interval:.0f}s)"
            fields.update(suppressed=suppressed, interval=self.interval)
        method(format, **fields)
        return True
