"""
Test doubles and helpers for code that uses muxpool, as C{treq.testing} is
for treq; muxpool's own tests use them.  Import it explicitly (C{import
muxpool} does not load it).

In memory, on a C{task.Clock}:
  - L{MemoryLink}: an L{ILink} (and L{ISource}) that records what is sent
    and delivers what a test says; can be not ready, lose its connection,
    refuse a send, and answer probes.
  - L{MemoryIssuer}: answers what is written on a L{MemoryLink} by rules
    (L{MemoryIssuer.when}): a result code, fixed fields, a delay, no
    answer, a dropped connection.
  - L{PoolHarness}: a started L{MUXPool} of in-memory members, to unit-test
    a strategy or a pool setting in a few lines.
  - L{outcomeOf}, L{runUntil}, L{answer}: read a request's outcome, let
    time pass, build a response.
  - L{attachmentsOf}, L{observersOf}: what a stopped service still holds
    of a link or a ready state (nothing, if it let go).

On 127.0.0.1 (integration tests, real sockets, OS-chosen ports):
  - L{startIssuer}: a started L{QServer} answering with a L{Responder}.
  - L{startLink}: a started L{ChannelAdaptor} and L{QMUX} to it.
  - L{FaultProxy}: a TCP proxy between any two parties, with faults
    (latency, jitter, bandwidth, blackhole, reset, a byte limit, sliced
    writes, refused connections) switched on and off while it runs.
"""

from muxpool.testing._faults import BOTH, DOWNSTREAM, UPSTREAM, FaultProxy, Faults
from muxpool.testing._harness import PoolHarness, outcomeOf, runUntil
from muxpool.testing._issuer import MemoryIssuer, Rule, answer
from muxpool.testing._leaks import attachmentsOf, observersOf
from muxpool.testing._link import MemoryLink
from muxpool.testing._loopback import LoopbackLink, defaultSpec, portOf, startIssuer, startLink

__all__ = [
    "MemoryLink",
    "MemoryIssuer",
    "Rule",
    "answer",
    "PoolHarness",
    "outcomeOf",
    "runUntil",
    "startIssuer",
    "startLink",
    "LoopbackLink",
    "portOf",
    "defaultSpec",
    "attachmentsOf",
    "observersOf",
    "FaultProxy",
    "Faults",
    "UPSTREAM",
    "DOWNSTREAM",
    "BOTH",
]
