"""
Observer lists that survive their observers, and waiter lists that survive
their waiters.

Calling observers is a boundary with other code.  As Twisted's own event
triggers do, L{Observers.notify} calls each observer on a snapshot of the
list (so an observer may add or remove observers, itself included, while
it runs) and an observer that raises is logged and skipped: the others still
hear of the change, and the caller never sees the exception.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from muxpool._support._usercode import describeCode, describeError

log = Logger()

#: The keyword arguments of callbacks added with C{Deferred.addCallbacks}:
#: one shared empty dict instead of a new one per request (memory per
#: request in flight counts).  Never changed.
NO_KEYWORDS: Dict[str, Any] = {}


class Observers:
    """
    An ordered list of callables, notified safely.

    @ivar what: what is being observed, for the log line of a failure.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._observers: List[Callable[..., Any]] = []

    def add(self, observer: Callable[..., Any]) -> None:
        self._observers.append(observer)

    def remove(self, observer: Callable[..., Any]) -> None:
        """
        Forget C{observer}; no error if it is not there.
        """
        if observer in self._observers:
            self._observers.remove(observer)

    def __len__(self) -> int:
        return len(self._observers)

    def __contains__(self, observer: object) -> bool:
        return observer in self._observers

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        """
        The observers now (a snapshot: the list may change meanwhile).
        """
        return iter(tuple(self._observers))

    def notify(self, *args: Any) -> None:
        """
        Call every observer with C{args}; log and skip any that raises.

        The log line names the observer and the error's type and place, not
        its text: the arguments may carry card data.
        """
        for observer in tuple(self._observers):
            try:
                observer(*args)
            except Exception as e:
                log.error(
                    "{what}: observer {observer} failed: {error}",
                    what=self.what,
                    observer=describeCode(observer),
                    error=describeError(e),
                )


class Waiters:
    """
    Deferreds waiting for one event, fired together when it comes.

    Cancelling a waiter forgets it; a waiter cancelled while the others are
    being fired (by a callback of an earlier one) is skipped, never fired
    twice.
    """

    def __init__(self) -> None:
        self._waiting: List[Deferred] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def wait(self) -> Deferred:
        """
        A Deferred that fires at the next L{fire}.
        """
        d: Deferred[Any] = Deferred(self._forget)
        self._waiting.append(d)
        return d

    def _forget(self, d: Deferred) -> None:
        if d in self._waiting:
            self._waiting.remove(d)

    def fire(self, result: Any = None) -> None:
        """
        Fire every waiter with C{result} (those added meanwhile wait on).
        """
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.callback(result)

    def cancel(self) -> None:
        """
        Cancel every waiter (a service stopping holds none).
        """
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.cancel()
