"""
A deadline queue: many items, each with a deadline, and one timer.

A QMUX gives every request a deadline.  One C{callLater} per request is what
Twisted's DNS client does, but a C{DelayedCall} with its arguments costs
about 500 bytes, and a switch holds tens of thousands of requests in flight
while an issuer is slow.  A heap of small entries with a single timer for the
earliest deadline does the same job for about 100 bytes each.  An entry
removed early (the request was answered) is marked and left in the heap, as
C{heapq}'s documentation suggests, holding nothing; the heap is compacted
when such entries pass half of it, as Twisted's reactor does with cancelled
calls.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Callable, Generic, List, Optional, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from muxpool._support._timers import cancelTimer
from muxpool._support._usercode import describeError

T = TypeVar("T")

#: Removed entries tolerated in the heap before it may be compacted.
_COMPACT_AFTER = 64


class Entry(List[object]):
    """
    One item in a L{DeadlineQueue}: C{[deadline, order, item]}; the item is
    C{None} once removed or expired.  A list, not an object: it is the
    smallest thing that orders right in a heap and can be marked.
    """

    __slots__ = ()


class DeadlineQueue(Generic[T]):
    """
    Calls C{expired(item)} once the deadline given for C{item} has come,
    unless the item was removed before, as one C{callLater} per item would:
    items expire in the order of their deadlines (the same deadline: the
    order they were added), each in a reactor turn at or after its deadline,
    so other timed calls due before it run before it; an item added with a
    deadline already past expires in a later turn, never inside L{add}.  It
    holds a timer only while it holds items.

    @param clock: the reactor (or a C{task.Clock} in tests).
    @param expired: what to call for each item whose deadline came.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, expired: Callable[[T], object]) -> None:
        self.clock = clock
        self._expired = expired
        self._heap: List[Entry] = []
        self._added = 0  # entries added so far: the order of the next
        self._removed = 0  # entries in the heap marked removed
        self._timer: Optional[IDelayedCall] = None
        self._due = 0.0  # the deadline the timer is set for

    def __len__(self) -> int:
        """
        How many items wait for their deadline.
        """
        return len(self._heap) - self._removed

    def add(self, deadline: float, item: T) -> Entry:
        """
        Watch C{item} until C{deadline} (in C{clock.seconds()} time).

        @return: its entry, to give to L{remove}.
        """
        entry = Entry((deadline, self._added, item))
        self._added += 1
        heappush(self._heap, entry)
        if self._timer is None or deadline < self._due:
            self._arm()
        return entry

    def remove(self, entry: Entry) -> None:
        """
        Stop watching the item of C{entry}; nothing if it is gone already.
        """
        if entry[2] is None:
            return
        entry[2] = None
        heap = self._heap
        self._removed += 1
        if heap[0] is entry:
            self._dropRemoved()  # the usual case: answers come in order
            if not heap:
                self._disarm()
        elif self._removed > _COMPACT_AFTER and 2 * self._removed > len(heap):
            # in place: a loop in _fire may be holding the list
            heap[:] = [e for e in heap if e[2] is not None]
            heapify(heap)
            self._removed = 0

    def _dropRemoved(self) -> None:
        heap = self._heap
        while heap and heap[0][2] is None:
            heappop(heap)
            self._removed -= 1

    def _arm(self) -> None:
        self._disarm()
        self._dropRemoved()
        if not self._heap:
            return
        self._due = self._heap[0][0]  # type: ignore[assignment]
        self._timer = self.clock.callLater(max(0.0, self._due - self.clock.seconds()), self._fire)

    def _disarm(self) -> None:
        self._timer = cancelTimer(self._timer)

    def _fire(self) -> None:
        self._timer = None
        # Those due when the timer was set (by its time, not the clock's: a
        # timer can fire a rounding error early, or late, after other timed
        # calls that were due before the rest), and not added meanwhile.
        due, added = self._due, self._added
        heap = self._heap
        while heap and heap[0][0] <= due and heap[0][1] < added:  # type: ignore[operator]
            entry = heappop(heap)
            item, entry[2] = entry[2], None
            if item is None:
                self._removed -= 1
                continue
            try:
                self._expired(item)  # type: ignore[arg-type]
            except Exception as e:
                # the error's type and place, never its text (it may carry
                # the fields of a message)
                self.log.error(
                    "expiring {kind} failed: {error}",
                    kind=type(item).__name__,
                    error=describeError(e),
                )
        # Once per fire (rare: about once a timeout): set the timer afresh for
        # the next deadline, or drop one armed meanwhile for an entry since
        # removed.
        self._arm()
