"""
Readiness: queried, observed and waited on.
"""

from muxpool import Readiness


def test_wait_for_either_state():
    readiness = Readiness(False)
    seen, up, down = [], [], []
    readiness.addObserver(seen.append)
    readiness.whenState(True).addCallback(up.append)
    readiness.whenState(False).addCallback(down.append)
    assert down == [False] and up == []
    readiness.set(True)
    readiness.set(True)
    assert up == [True] and seen == [True]
    later = []
    readiness.whenState(False).addCallback(later.append)
    assert later == []
    readiness.set(False)
    assert later == [False] and seen == [True, False]


def test_cancelled_wait_is_forgotten():
    readiness = Readiness(False)
    d = readiness.whenReady()
    d.addErrback(lambda f: None)
    d.cancel()
    readiness.set(True)
    assert d.called
