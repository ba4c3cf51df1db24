"""
L{ParentWatch}: a worker stops gracefully once its parent is gone.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IReadDescriptor)
class ParentWatch(Service):
    """
    In a worker: stop gracefully once the parent is gone.  The parent holds
    the write end of the worker's stdin and never writes; the kernel closes
    it when the parent ends, however it ends (SIGKILL too), and the worker
    reads end-of-file.  Without this, workers of a killed parent would go on
    serving, unsupervised, holding the ports.
    """

    log = Logger()

    def __init__(self, reactor: Any, onGone: Callable[[str], None], fd: int = 0) -> None:
        self.setName("parent-watch")
        self.reactor = reactor
        self.onGone = onGone
        self.fd = fd
        #: The parent's pid, as it was when this worker started.
        self.parentPid = os.getppid()
        self._watching = False

    def startService(self) -> None:
        Service.startService(self)
        try:
            isPipe = stat.S_ISFIFO(os.fstat(self.fd).st_mode)
        except OSError:
            isPipe = False  # no stdin
        if not isPipe:
            # Not started by a supervisor (a terminal, /dev/null, a file):
            # there is no parent pipe to watch, and a terminal's mode is
            # not ours to change.
            self.log.info("workers: stdin is not the parent's pipe; not watching the parent")
            return
        os.set_blocking(self.fd, False)
        self.reactor.addReader(self)
        self._watching = True

    def stopService(self) -> None:
        Service.stopService(self)
        self._unwatch()

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self.reactor.removeReader(self)

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._unwatch()
            self._gone()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor saw the pipe hang up (it removed us already).
        if self._watching:
            self._watching = False
            self._gone()

    def _gone(self) -> None:
        self.log.warn(
            "workers: the parent (pid {ppid}) is gone; stopping gracefully",
            ppid=self.parentPid,
            event="workers.orphaned",
        )
        self.onGone("parent gone")

    def logPrefix(self) -> str:
        return "parent-watch"
