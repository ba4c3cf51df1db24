"""
DeadlineQueue: one timer for many deadlines, as one callLater each would
behave.
"""

from twisted.internet.task import Clock

from muxpool._support import DeadlineQueue


def make(then=None):
    """
    A queue on a Clock that records what expires, then calls
    C{then(queue, item)} (re-entrant tests).
    """
    clock = Clock()
    expired = []

    def onExpired(item):
        expired.append(item)
        if then is not None:
            then(queue, item)

    queue = DeadlineQueue(clock, onExpired)
    return clock, expired, queue


def test_each_item_expires_at_its_deadline_in_order():
    clock, expired, queue = make()
    queue.add(5.0, "b")
    queue.add(2.0, "a")
    queue.add(5.0, "c")  # same deadline as b: after it
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(1.9)
    assert expired == []
    clock.advance(0.1)
    assert expired == ["a"]
    clock.advance(3)
    assert expired == ["a", "b", "c"]
    assert clock.getDelayedCalls() == [] and len(queue) == 0


def test_a_past_deadline_expires_in_a_later_turn_not_inside_add():
    clock, expired, queue = make()
    clock.advance(10)
    queue.add(3.0, "late")
    assert expired == []
    clock.advance(0)
    assert expired == ["late"]


def test_removed_items_never_expire_and_the_timer_goes_with_the_last():
    clock, expired, queue = make()
    first, second = queue.add(1.0, "x"), queue.add(2.0, "y")
    queue.remove(second)  # not at the head: marked
    queue.remove(second)  # again: nothing
    assert len(queue) == 1 and len(clock.getDelayedCalls()) == 1
    queue.remove(first)
    assert len(queue) == 0 and clock.getDelayedCalls() == []
    clock.advance(5)
    assert expired == []


def test_an_earlier_deadline_rearms_the_timer():
    clock, expired, queue = make()
    queue.add(30.0, "slow")
    queue.add(1.0, "fast")
    clock.advance(1)
    assert expired == ["fast"]
    assert [c.getTime() for c in clock.getDelayedCalls()] == [30.0]


def test_removed_entries_are_compacted_and_hold_nothing():
    clock, expired, queue = make()
    queue.add(100.0, "hung")  # stays at the head while the rest are answered
    for i in range(10000):
        queue.remove(queue.add(1.0 + i, object()))
    assert len(queue) == 1
    assert len(queue._heap) < 200  # bounded, not 10,001
    assert [entry[2] for entry in queue._heap if entry[2] is not None] == ["hung"]
    clock.advance(100)
    assert expired == ["hung"]


def test_expiring_may_add_and_remove_and_one_that_raises_does_not_stop_the_rest():
    entries = {}

    def then(queue, item):
        if item == "a":
            queue.remove(entries["b"])  # a sibling, due at the same time
            entries["d"] = queue.add(clock.seconds(), "d")  # due now: a later turn
        if item == "c":
            raise RuntimeError("a broken observer")

    clock, expired, queue = make(then)
    for name in "abc":
        entries[name] = queue.add(1.0, name)
    entries["e"] = queue.add(2.0, "e")
    clock.advance(1)
    assert expired == ["a", "c", "d"]
    clock.advance(1)
    assert expired == ["a", "c", "d", "e"] and clock.getDelayedCalls() == []


def test_a_timer_firing_a_rounding_error_early_still_expires_its_items():
    clock, expired, queue = make()
    queue.add(0.3, "x")
    (call,) = clock.getDelayedCalls()
    clock.advance(0.3 - 1e-12)  # the reactor's sum of floats, a hair short of 0.3
    fire = call.func
    call.cancel()
    fire()  # ... and the timer runs all the same
    assert expired == ["x"] and clock.getDelayedCalls() == []


def test_other_timed_calls_due_before_an_item_run_before_it_even_when_late():
    # As with one callLater per item: B's answer, due at 1.5, comes before
    # B's deadline at 2, even when the clock jumps past both at once.
    clock, expired, queue = make()
    queue.add(1.0, "a")
    b = queue.add(2.0, "b")
    clock.callLater(1.5, queue.remove, b)
    clock.advance(3)
    assert expired == ["a"] and clock.getDelayedCalls() == []


def test_no_timer_is_left_when_items_come_and_go_while_expiring():
    # An item added and removed from inside an expiry leaves no timer armed
    # with nothing to watch.
    def then(queue, item):
        if item == "a":
            queue.remove(queue.add(29.0, "follow-up"))  # sent, answered at once

    clock, expired, queue = make(then)
    queue.add(1.0, "a")
    queue.remove(queue.add(20.0, "cancelled"))  # marked, behind the head
    clock.advance(1)
    assert expired == ["a"] and len(queue) == 0 and clock.getDelayedCalls() == []


def test_an_item_added_already_due_while_expiring_waits_for_a_later_turn():
    def then(queue, item):
        if item == "a":
            queue.add(0.5, "b")  # past already

    clock, expired, queue = make(then)
    queue.add(1.0, "a")
    (call,) = clock.getDelayedCalls()
    fire = call.func
    call.cancel()
    clock.advance(1)
    fire()
    assert expired == ["a"]
    clock.advance(0)
    assert expired == ["a", "b"] and clock.getDelayedCalls() == []
