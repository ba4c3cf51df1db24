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

from muxpool.app import (
    STABLE_AFTER,
    ParentWatch,
    WorkerProcess,
    WorkerSockets,
    WorkerSupervisor,
)
from muxpool.interfaces import ISocketSource
from tests.logcapture import capturedText


def reactor():
    from twisted.internet import reactor

    return reactor


def test_interfaces():
    verifyObject(ISocketSource, WorkerSockets(MemoryReactorClock(), {}))
    verifyObject(IReadDescriptor, ParentWatch(MemoryReactorClock(), lambda why: None))


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
        with capturedText() as lines:
            os.close(write)
            yield gone.addTimeout(10, reactor())
        assert calls == ["parent gone"] and watch not in reactor().getReaders()
        # the parent it had, not the process that adopted it since
        assert any(f"the parent (pid {os.getppid()}) is gone" in line for line in lines)
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


class FakeProcess:
    """
    The transport of a worker that ignores SIGTERM; ends on SIGKILL.
    """

    def __init__(self, worker):
        self.worker = worker
        self.signals = []

    def signalProcess(self, name):
        self.signals.append(name)
        if name == "KILL":
            from twisted.internet.error import ProcessTerminated
            from twisted.python.failure import Failure

            self.worker.processEnded(Failure(ProcessTerminated(signal=9)))


def test_a_worker_that_ignores_the_stop_is_killed_after_the_stop_timeout():
    clock = MemoryReactorClock()
    supervisor = WorkerSupervisor(1, "deploy", ["twistd"], clock, scanInterval=0, stopTimeout=120)
    supervisor.running = True  # its workers, without spawning processes
    worker = WorkerProcess(supervisor, 1)
    worker.transport = FakeProcess(worker)
    supervisor.workers[1] = worker
    stopped = []
    supervisor.stopService().addBoth(stopped.append)
    assert worker.transport.signals == ["TERM"] and stopped == []
    clock.advance(119)
    assert worker.transport.signals == ["TERM"] and stopped == []
    clock.advance(1)
    assert worker.transport.signals == ["TERM", "KILL"]
    assert len(stopped) == 1 and clock.getDelayedCalls() == []
    assert supervisor.workers == {}


def test_a_worker_that_ran_well_restarts_after_the_shortest_delay():
    from twisted.internet.error import ProcessTerminated
    from twisted.python.failure import Failure

    clock = MemoryReactorClock()
    supervisor = WorkerSupervisor(1, "deploy", ["twistd"], clock, scanInterval=0)
    supervisor.running = True
    delays = []
    for lived in (0, 0, 0, STABLE_AFTER):
        worker = WorkerProcess(supervisor, 1)
        supervisor.workers[1] = worker
        clock.advance(lived)
        worker.processEnded(Failure(ProcessTerminated(exitCode=1)))
        call = supervisor._restarts.pop(1)
        delays.append(call.getTime() - clock.seconds())
        call.cancel()
    assert delays == [1.0, 2.0, 4.0, 1.0]


def test_the_parent_keeps_a_socket_while_its_descriptor_is_briefly_broken(tmp_path):
    # A descriptor saved half-written does not make the parent close the
    # server's socket (workers restarted later must inherit it).
    from tests.deployfiles import freePort, front

    path = tmp_path / "50_front.xml"
    text = front("front", freePort(), "core-mux")
    path.write_text(text)
    supervisor = WorkerSupervisor(1, str(tmp_path), ["twistd"], reactor(), scanInterval=0)
    supervisor.scan()  # as at the start: it listens
    try:
        [held] = supervisor.sockets
        supervisor.running = True  # later scans only let go
        path.write_text(text[:40])  # half-saved
        supervisor.scan()
        assert list(supervisor.sockets) == [held]
        path.write_text(text)
        supervisor.scan()
        assert list(supervisor.sockets) == [held]
        path.unlink()
        supervisor.scan()
        assert supervisor.sockets == {}
    finally:
        for port in supervisor.sockets.values():
            port.stopListening()
