"""
The network messages a link sends itself (an echo, a sign-on, a sign-off:
an 0800 with field 70) and the 0810s that answer them, matched on field 11.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime

from muxpool.iso import Stans, networkRequest


class NetworkExchange:
    """
    0800s sent, each waiting for the 0810 with its field 11.

    @param clock: for field 7 and the timeouts; None: no field 7 and no
        timeouts (an in-memory link).
    @param stans: where field 11 comes from; a server's sessions share
        their server's, so no two of its sign-offs carry the same number.
    """

    def __init__(self, clock: Optional[IReactorTime], stans: Optional[Stans] = None) -> None:
        self.clock = clock
        self.stans = stans if stans is not None else Stans()
        self._waiting: Dict[str, Tuple[str, Deferred]] = {}  # STAN -> (70, wait)

    def __len__(self) -> int:
        """
        How many wait for their answer.
        """
        return len(self._waiting)

    def send(
        self, write: Callable[[Mapping[str, str]], object], code: str, timeout: Optional[float]
    ) -> Deferred:
        """
        Write (with C{write}) an 0800 with 70=C{code}.

        @return: a Deferred firing with its 0810; failing with a
            C{TimeoutError} after C{timeout} seconds (None: no timeout), or
            with what C{write} raised (nothing was sent then).  Cancelling
            it stops the wait.
        """
        stan = self.stans.next()
        now = self.clock.seconds() if self.clock is not None else None
        message = networkRequest(code, stan, now)

        def forget(_: Deferred) -> None:
            self._waiting.pop(stan, None)

        d: Deferred = Deferred(forget)
        self._waiting[stan] = (code, d)  # before the write: an answer may come inside it
        try:
            write(message)
        except Exception as e:
            self._waiting.pop(stan, None)
            return fail(e)
        if timeout is not None and self.clock is not None and not d.called:
            d.addTimeout(timeout, self.clock)
        return d

    def take(self, message: Mapping[str, str]) -> bool:
        """
        Whether C{message} answers one of the 0800s sent (an 0810 with its
        field 11, and its 70 if it carries one); if it does, its wait ends
        with it.
        """
        if message.get("t") != "0810":
            return False
        stan = message.get("11", "").strip()
        waiting = self._waiting.get(stan)
        if waiting is None or message.get("70", waiting[0]) != waiting[0]:
            return False
        del self._waiting[stan]
        waiting[1].callback(message)
        return True

    def cancel(self) -> None:
        """
        Stop every wait (the connection is gone).
        """
        waiting, self._waiting = self._waiting, {}
        for _, d in waiting.values():
            d.cancel()
