"""
A ready state that can be both queried and waited on, never polled.

A link's L{Readiness} is true while a connection is up and signed on; a MUX
mirrors its link's; a pool's is true while any member is usable.
"""

from typing import Callable, List

from twisted.internet.defer import Deferred


class Readiness:
    """
    A boolean that tells observers when it changes.
    """

    def __init__(self, value: bool = False) -> None:
        self._value = bool(value)
        self._observers: List[Callable[[bool], None]] = []
        self._waiters: List[Deferred] = []

    def __bool__(self) -> bool:
        return self._value

    def __repr__(self) -> str:
        return f"<Readiness {self._value}>"

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool) -> None:
        """
        Change the state; observers and waiters hear of real changes only.
        """
        value = bool(value)
        if value == self._value:
            return
        self._value = value
        for observer in list(self._observers):
            observer(value)
        if value and self._waiters:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(True)

    def addObserver(self, observer: Callable[[bool], None]) -> None:
        """
        Call C{observer(value)} on every change.
        """
        self._observers.append(observer)

    def removeObserver(self, observer: Callable[[bool], None]) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def whenReady(self) -> Deferred:
        """
        A Deferred that fires (with C{True}) when the state is next true, at
        once if it is true now.  Cancelling it stops the wait.
        """
        if self._value:
            d = Deferred()
            d.callback(True)
            return d

        def cancel(d):
            if d in self._waiters:
                self._waiters.remove(d)

        d = Deferred(cancel)
        self._waiters.append(d)
        return d
