"""
The parts of C{--workers} that run in one process: how a worker listens,
and how it learns that its parent is gone.
"""

import os

import pytest_twisted
from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from muxpool.interfaces import ISocketSource
from muxpool.workers import ParentWatch, WorkerSockets, _tcpParts


def reactor():
    from twisted.internet import reactor

    return reactor


def test_interfaces():
    verifyObject(ISocketSource, WorkerSockets(MemoryReactorClock(), {}))
    verifyObject(IReadDescriptor, ParentWatch(MemoryReactorClock(), lambda why: None))


def test_tcp_parts():
    assert _tcpParts("tcp:8000:interface=127.0.0.1:backlog=10") == (8000, "127.0.0.1", 10)
    assert _tcpParts("tcp:8000") == (8000, "", 50)
    assert _tcpParts("ssl:8000") is None
    assert _tcpParts("tcp:http") is None


@pytest_twisted.inlineCallbacks
def test_the_parent_closing_the_pipe_stops_the_worker_once():
    read, write = os.pipe()
    gone = defer.Deferred()
    calls = []

    def onGone(why):
        calls.append(why)
        gone.callback(None)

    watch = ParentWatch(reactor(), onGone, fd=read)
    watch.startService()
    try:
        assert watch in reactor().getReaders()
        os.close(write)
        yield gone.addTimeout(10, reactor())
        assert calls == ["parent gone"] and watch not in reactor().getReaders()
    finally:
        watch.stopService()
        os.close(read)
    assert calls == ["parent gone"]


def test_a_stopped_watch_holds_nothing():
    read, write = os.pipe()
    try:
        clock = MemoryReactorClock()
        watch = ParentWatch(clock, lambda why: None, fd=read)
        watch.startService()
        assert watch in clock.getReaders()
        watch.stopService()
        assert watch not in clock.getReaders() and not watch.running
    finally:
        os.close(read)
        os.close(write)


def test_a_worker_started_without_a_parent_pipe_does_not_watch(tmp_path):
    # stdin a terminal, /dev/null or a file (a worker started by hand): no
    # parent to watch, and the file's mode is left alone.
    path = tmp_path / "stdin"
    path.write_bytes(b"")
    with open(path, "rb") as stdin:
        clock = MemoryReactorClock()
        gone = []
        watch = ParentWatch(clock, gone.append, fd=stdin.fileno())
        watch.startService()
        assert watch not in clock.getReaders() and gone == []
        assert os.get_blocking(stdin.fileno())
        watch.stopService()
