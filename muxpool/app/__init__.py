"""
The switch as an application, beyond one service: worker processes, and
the traffic the command line and the benchmarks send.

Every core: C{twistd muxpool --workers N} runs N worker processes sharing
each server's listening socket (L{WorkerSupervisor} in the parent,
L{WorkerSockets} and L{ParentWatch} in each worker).

Traffic: L{runLoad} is a bounded-concurrency request loop through any MUX
(C{muxpool load}); L{report} sums its outcomes up.
"""

from muxpool.app._load import outcomeRecord, report, runLoad
from muxpool.app._parentwatch import ParentWatch
from muxpool.app._sockets import INHERITED, WorkerSockets
from muxpool.app._supervisor import STABLE_AFTER, WorkerProcess, WorkerSupervisor, workerArgv

__all__ = [
    "INHERITED",
    "ParentWatch",
    "STABLE_AFTER",
    "WorkerProcess",
    "WorkerSockets",
    "WorkerSupervisor",
    "outcomeRecord",
    "report",
    "runLoad",
    "workerArgv",
]
