"""
The node as a balancer sees it: whether it should get new sessions
(L{NodeState.readiness}), what HAProxy's agent check is told
(L{NodeState.agentWord}), and draining the whole node ahead of a stop.

A node is ready while every deployed server is listening and every MUX a
server's C{Forward} names is usable; not while it drains (C{POST /drain},
or a stop's drain delay) or stops.  Draining changes only what the node
says: it serves every session it has, and takes the ones it is still
given, until it stops.
"""

from __future__ import annotations

from typing import List, Tuple

from twisted.logger import Logger

from muxpool.link import QServer
from muxpool.listeners import Forward
from muxpool.registry import Registry


class Draining:
    """
    A node's drain: while C{draining} (L{drain}, until L{undrain}) or
    C{stopping} (for good), it says "drain" and is not ready, and serves on.
    """

    log = Logger()

    def __init__(self) -> None:
        self.draining = False
        self.stopping = False

    def drain(self, why: str = "asked to") -> bool:
        """
        Say "drain" and not ready from now on; the node serves on.

        @return: whether it was not draining before.
        """
        if self.draining:
            return False
        self.draining = True
        self.log.info(
            "node draining ({why}): not ready for new sessions", why=why, event="node.drain"
        )
        return True

    def undrain(self) -> bool:
        """
        Back to ready (if nothing else keeps it from it); not once stopping.

        @return: whether it was draining before.
        """
        if not self.draining or self.stopping:
            return False
        self.draining = False
        self.log.info("node no longer draining", event="node.undrain")
        return True


class NodeState(Draining):
    """
    Readiness and draining of the node whose beans are in C{registry}.
    """

    def __init__(self, registry: Registry) -> None:
        Draining.__init__(self)
        self.registry = registry

    def servers(self) -> List[QServer]:
        found = (self.registry.lookup(name) for name in self.registry.names())
        return [obj for obj in found if isinstance(obj, QServer)]

    def readiness(self) -> Tuple[bool, str]:
        """
        Whether the node should get new sessions, and why (or why not).
        """
        if self.stopping:
            return False, "stopping"
        if self.draining:
            return False, "draining"
        servers = self.servers()
        if not servers:
            return False, "no server deployed"
        for server in servers:
            if server.port is None:
                return False, f"server {server.name} is not listening"
            for listener in server.listeners:
                if not isinstance(listener, Forward):
                    continue
                name = listener.muxName
                try:
                    mux = listener.mux  # as the Forward finds it
                except KeyError:
                    return False, f"server {server.name} forwards to {name}, which is not deployed"
                if not mux.ready:
                    return False, f"server {server.name} forwards to {name}, which is not usable"
        return True, "ready"

    def sessionLimit(self) -> int:
        """
        How many sessions the servers hold at most, together: each one's
        C{maxSessions}, and the process's default budget once for those
        that share it (HAProxy's C{maxconn:N} is such a limit, not what is
        left of it).
        """
        servers = self.servers()
        own = sum(s.maxSessions for s in servers if s.settings.maxSessions is not None)
        shared = [s.maxSessions for s in servers if s.settings.maxSessions is None]
        return own + (max(shared) if shared else 0)

    def agentWord(self) -> str:
        """
        The line HAProxy's C{agent-check} reads: C{drain} while draining
        (no new sessions, those open kept), C{ready up maxconn:N} while
        ready (N: L{sessionLimit}), C{down} otherwise.
        """
        if self.draining or self.stopping:
            return "drain"
        ready, _ = self.readiness()
        if not ready:
            return "down"
        return f"ready up maxconn:{max(1, self.sessionLimit())}"
