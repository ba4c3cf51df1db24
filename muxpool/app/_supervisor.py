"""
Every core: C{twistd muxpool --workers N} runs N worker processes.

The parent listens on each server's endpoint found in the deploy folder and
hands the listening sockets to its workers, which adopt them (Twisted's
C{adoptStreamPort}): every worker accepts on the same sockets, and a
connection waiting to be accepted is never lost with one worker.  Each
worker runs the whole deploy folder itself, with its own adaptors, QMUXes
and pools (so an issuer sees N connections per channel adaptor), and hot
deploy works in each.  The parent restarts a worker that dies (its sockets
stay listening meanwhile), and passes SIGTERM, SIGINT and SIGHUP on for a
graceful stop.  A worker whose parent is gone (killed, say) stops
gracefully too (L{ParentWatch}).

A server deployed after the start is listened on by each worker with
C{SO_REUSEPORT} (the kernel spreads connections over them); a server removed
from the folder has the parent's socket closed at its next scan.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from muxpool._config import Stamp, fileStamp, parseEndpoint
from muxpool._support import backoffDelay, cancelTimer
from muxpool.app._sockets import INHERITED
from muxpool.deploy import DescriptorError, descriptorFiles, kindOf, readDescriptor, serverEndpoint

#: A worker that ran this long (seconds) before it ended restarts after the
#: shortest delay again: its earlier failures are history.
STABLE_AFTER = 60.0


class WorkerProcess(ProcessProtocol):
    """
    The parent's handle on worker number C{index}: tells the supervisor
    when it ends.

    @ivar ended: fires (with None) once the process has ended.
    """

    def __init__(self, supervisor: "WorkerSupervisor", index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = supervisor.reactor.seconds()
        self.ended: Deferred = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)  # (a Failure here would be an unhandled error)
        self.supervisor._ended(self, reason)


class _NoAccept(Factory):
    """
    The parent never accepts: its ports only hold the sockets for workers.
    """

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        return None


class WorkerSupervisor(Service):
    """
    The parent of C{count} workers running C{argv} (a twistd command line).
    """

    log = Logger()

    def __init__(
        self,
        count: int,
        directory: str,
        argv: List[str],
        reactor: Any,
        scanInterval: float = 2.0,
        stopTimeout: float = 120.0,
    ) -> None:
        self.setName("workers")
        self.count = count
        self.directory = directory
        self.argv = argv
        self.reactor = reactor
        self.scanInterval = scanInterval
        self.stopTimeout = stopTimeout
        self.sockets: Dict[str, Any] = {}  # tcp.Port: its fileno() goes to the workers
        self.workers: Dict[int, WorkerProcess] = {}
        self._failures: Dict[int, int] = {}
        self._restarts: Dict[int, IDelayedCall] = {}
        self._loop: Optional[LoopingCall] = None
        # descriptor path -> (its stamp when read, the endpoint it serves)
        self._endpoints: Dict[str, Tuple[Optional[Stamp], Optional[str]]] = {}
        self._unreadableWhy: Optional[str] = None

    def startService(self) -> None:
        self.scan()  # not running yet: it listens for every server
        Service.startService(self)
        for index in range(1, self.count + 1):
            self._spawn(index)
        if self.scanInterval:
            self._loop = LoopingCall(self.scan)
            self._loop.clock = self.reactor
            self._loop.start(self.scanInterval, now=False)

    def scan(self) -> None:
        """
        At the start, hold a listening socket for every server endpoint in
        the folder, for the workers to adopt; later, let go of those whose
        server is gone (a server added later is the workers' own, with
        SO_REUSEPORT: a socket bound here would stand in their way).  A
        file that does not parse for now keeps what it had: only a file
        removed, or naming another endpoint, lets its socket go.  A folder
        that cannot be read (no file descriptor left, say) changes nothing.
        """
        from twisted.internet.endpoints import serverFromString

        try:
            files = set(descriptorFiles(self.directory))
        except OSError as e:
            if e.strerror != self._unreadableWhy:  # once per reason, not per scan
                self.log.error(
                    "workers: cannot read deploy folder {directory}: {why}; keeping every socket",
                    directory=self.directory,
                    why=e.strerror,
                )
            self._unreadableWhy = e.strerror
            return
        self._unreadableWhy = None
        for path in set(self._endpoints) - files:
            del self._endpoints[path]
        for path in sorted(files):
            stamp = fileStamp(path)
            known = self._endpoints.get(path)
            if known is not None and known[0] == stamp:
                continue  # unchanged since last read
            try:
                root = readDescriptor(path)
                description = serverEndpoint(root) if kindOf(path, root) == "server" else None
            except (DescriptorError, ValueError):
                # the workers report it; until it is mended it keeps its socket
                description = known[1] if known is not None else None
            self._endpoints[path] = (stamp, description)
        wanted = {description for _, description in self._endpoints.values() if description}
        for description in sorted(wanted - set(self.sockets) if not self.running else ()):
            parsed = parseEndpoint(description)
            if parsed.kind != "tcp" or parsed.port is None:
                continue  # not shared: each worker listens as it can
            try:
                port = self._listenNow(serverFromString(self.reactor, description))
            except Exception as e:
                self.log.error(
                    "workers: cannot listen on {endpoint}: {error}", endpoint=description, error=e
                )
                continue
            self.sockets[description] = port
        for description in sorted(set(self.sockets) - wanted):
            self.sockets.pop(description).stopListening()

    def _listenNow(self, endpoint: Any) -> Any:
        result: List[Any] = []
        endpoint.listen(_NoAccept()).addBoth(result.append)  # TCP listens at once
        if isinstance(result[0], Failure):
            result[0].raiseException()
        result[0].stopReading()  # the workers accept, not the parent
        return result[0]

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        if not self.running:
            return
        inherited = {
            desc: [
                port.fileno(),
                socket.AF_INET6 if isinstance(port.getHost(), IPv6Address) else socket.AF_INET,
            ]
            for desc, port in self.sockets.items()
        }
        env = dict(os.environ)
        env[INHERITED] = json.dumps(inherited)
        childFDs = {0: "w", 1: 1, 2: 2}
        for fd, _ in inherited.values():
            childFDs[fd] = fd
        worker = WorkerProcess(self, index)
        self.reactor.spawnProcess(
            worker, self.argv[0], self.argv + ["--worker", str(index)], env=env, childFDs=childFDs
        )
        self.workers[index] = worker
        self.log.info(
            "workers: worker {index} started (pid {pid})",
            index=index,
            pid=getattr(worker.transport, "pid", None),
            event="workers.started",
        )

    def _ended(self, worker: WorkerProcess, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if not self.running:
            return
        if self.reactor.seconds() - worker.started >= STABLE_AFTER:
            self._failures.pop(worker.index, None)  # it had been running well: start over
        failures = self._failures[worker.index] = self._failures.get(worker.index, 0) + 1
        delay = backoffDelay(failures, 1.0, 30.0, 2.0)
        self.log.warn(
            "workers: worker {index} ended ({reason}); restarting in {delay:g}s",
            index=worker.index,
            reason=reason.getErrorMessage(),
            delay=delay,
            event="workers.restarting",
        )
        self._restarts[worker.index] = self.reactor.callLater(delay, self._spawn, worker.index)

    def stopService(self) -> Deferred:
        """
        Pass a graceful stop on to every worker; fires when all have ended.
        """
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for call in self._restarts.values():
            cancelTimer(call)
        self._restarts.clear()
        ending = []
        for worker in list(self.workers.values()):
            ending.append(worker.ended)
            try:
                if worker.transport is not None:
                    worker.transport.signalProcess("TERM")
            except Exception:
                pass  # already gone

        def kill() -> None:
            # They had their drain; one that still runs does not get to block us.
            self.log.warn(
                "workers: still running after {timeout:g}s; killing them", timeout=self.stopTimeout
            )
            for worker in list(self.workers.values()):
                if worker.transport is not None:
                    try:
                        worker.transport.signalProcess("KILL")
                    except Exception:
                        pass

        timer = self.reactor.callLater(self.stopTimeout, kill)

        def release(result: Any) -> Any:
            cancelTimer(timer)
            for port in self.sockets.values():
                port.stopListening()
            self.sockets.clear()
            return result

        # Fires once every worker has ended (killed, if need be).
        return DeferredList(ending).addBoth(release)


def workerArgv(options: Any, admin: Optional[str] = None) -> List[str]:
    """
    The command line that runs one worker of this twistd (the same options,
    with no --workers).  The parent serves the node's admin API and agent,
    and drains it on a stop: a worker gets only C{admin}, its private admin
    endpoint (each adds its number: see tap).
    """
    argv = [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "muxpool",
        "--deploy",
        options["deploy"],
        "--scan-interval",
        str(options["scan-interval"]),
        "--drain-timeout",
        str(options["drain-timeout"]),
    ]
    if admin:
        argv += ["--admin", admin]
        if options["admin-token-file"]:
            argv += ["--admin-token-file", options["admin-token-file"]]
    return argv
