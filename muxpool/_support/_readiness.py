"""
A ready state that can be both queried and waited on, never polled.

A link's L{Readiness} is true while a connection is up and signed on; a MUX
mirrors its link's; a pool's is true while any member is usable.
"""

from typing import Callable

from twisted.internet.defer import Deferred, succeed

from muxpool._support._observers import Observers, Waiters


class Readiness:
    """
    A boolean that tells observers when it changes.
    """

    def __init__(self, value: bool = False, what: str = "ready state") -> None:
        self._value = bool(value)
        self._observers = Observers(what)
        self._waiters = {True: Waiters(), False: Waiters()}

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
        self._observers.notify(value)
        if self._value != value:
            return  # an observer changed it back: those waiters wait on
        self._waiters[value].fire(value)

    def addObserver(self, observer: Callable[[bool], None]) -> None:
        """
        Call C{observer(value)} on every change.
        """
        self._observers.add(observer)

    def removeObserver(self, observer: Callable[[bool], None]) -> None:
        self._observers.remove(observer)

    def whenState(self, value: bool) -> Deferred:
        """
        A Deferred that fires (with C{value}) when the state is C{value}, at
        once if it is now.  Cancelling it stops the wait.
        """
        value = bool(value)
        if self._value == value:
            return succeed(value)
        return self._waiters[value].wait()

    def whenReady(self) -> Deferred:
        """
        L{whenState}C{(True)}: fires when the state is next true.
        """
        return self.whenState(True)
