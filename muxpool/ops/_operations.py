"""
What an operator does to a running switch, and sees of it: the state of
every deployed bean, and taking a MUX out of rotation and back.

A MUX is enabled, disabled or drained by name in every pool it is a member
of: that is how a node is taken out for an update and put back, and how a
C{check-enabled} pool's members are enabled.  The admin endpoint and the
C{muxpool} command-line verbs are built on this; embedders can use it too.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from muxpool.deploy import DeployService
from muxpool.interfaces import IMUX
from muxpool.link import ChannelAdaptor, QServer
from muxpool.mux import QMUX, MUXPool
from muxpool.ops._node import NodeState
from muxpool.registry import Registry


class UnknownMUX(KeyError):
    """
    No MUX of that name is deployed.
    """


class DrainTimeout(Exception):
    """
    A drained MUX still had requests in flight when the wait ended.
    """


class Operations:
    """
    The operator's view of the beans in C{registry} (and of C{deploy}'s
    folder, if given), and of the node (C{node}, a L{NodeState}).
    """

    log = Logger()

    def __init__(
        self, registry: Registry, clock: IReactorTime, deploy: Optional[DeployService] = None
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.deploy = deploy
        self.node = NodeState(registry)

    def beans(self) -> List[object]:
        """
        Every object registered, in name order (what status and metrics
        report on).
        """
        return [self.registry.lookup(name) for name in self.registry.names()]

    def pools(self) -> List[MUXPool]:
        return [obj for obj in self.beans() if isinstance(obj, MUXPool)]

    def mux(self, name: str) -> IMUX:
        """
        @raise UnknownMUX: naming the MUXes there are.
        """
        obj = self.registry.lookup(name)
        if obj is None or not IMUX.providedBy(obj):
            known = sorted(
                n for n in self.registry.names() if IMUX.providedBy(self.registry.lookup(n))
            )
            raise UnknownMUX(f"no MUX named {name!r} (deployed: {', '.join(known) or 'none'})")
        return obj

    def poolsOf(self, name: str) -> List[MUXPool]:
        return [pool for pool in self.pools() if any(m.name == name for m in pool.members)]

    def enable(self, name: str) -> List[str]:
        """
        Put MUX C{name} (back) into rotation in every pool it is in.

        @return: those pools' names.
        """
        self.mux(name)
        pools = self.poolsOf(name)
        for pool in pools:
            pool.enable(name)
        self.log.info(
            "{mux}: enabled in {pools}",
            mux=name,
            event="mux.enabled",
            pools=[p.name for p in pools],
        )
        return [p.name for p in pools]

    def disable(self, name: str, draining: bool = False) -> List[str]:
        """
        Take MUX C{name} out of rotation in every pool it is in; what is in
        flight on it finishes.

        @return: those pools' names.
        """
        self.mux(name)
        pools = self.poolsOf(name)
        for pool in pools:
            pool.disable(name, draining)
        self.log.info(
            "{mux}: {how} in {pools}",
            mux=name,
            how="draining" if draining else "disabled",
            event="mux.draining" if draining else "mux.disabled",
            pools=[p.name for p in pools],
        )
        return [p.name for p in pools]

    def drain(self, name: str, timeout: float = 30.0) -> Deferred:
        """
        Disable MUX C{name}, then fire (with the pools' names) once it has
        nothing in flight, or fail with L{DrainTimeout} after C{timeout}
        seconds.
        """
        mux = self.mux(name)
        pools = self.disable(name, draining=True)

        def drained(_: object) -> List[str]:
            self.log.info("{mux}: drained", mux=name, event="mux.drained")
            return pools

        def late(failure: Failure) -> None:
            failure.trap(TimeoutError)
            raise DrainTimeout(
                f"{name}: {mux.pendingCount()} requests still in flight after {timeout:g}s"
            )

        # QMUX and MUXPool say when they are drained; a MUX of one's own
        # that cannot say is taken as drained.
        whenDrained = getattr(mux, "whenDrained", None)
        waiting = whenDrained() if whenDrained is not None else succeed(None)
        return waiting.addTimeout(timeout, self.clock).addCallbacks(drained, late)

    def status(self) -> Dict[str, object]:
        """
        Every deployed bean's status (MUXes with their pool state), and the
        deploy folder's.
        """
        muxes, pools, channels, servers = [], [], [], []
        memberships: Dict[str, Dict[str, dict]] = {}  # MUX -> pool -> its status there
        for pool in self.pools():
            state = pool.status()
            pools.append(state)
            for member in state["members"]:
                memberships.setdefault(member["name"], {})[pool.name] = member
        for obj in self.beans():
            if isinstance(obj, QMUX):
                state = obj.status()
                inPools = memberships.get(obj.name, {})
                state["enabled"] = all(m["enabled"] for m in inPools.values())
                state["draining"] = any(m["state"] == "draining" for m in inPools.values())
                state["pools"] = sorted(inPools)
                muxes.append(state)
            elif isinstance(obj, ChannelAdaptor):
                channels.append(obj.status())
            elif isinstance(obj, QServer):
                servers.append(obj.status())
        ready, reason = self.node.readiness()
        status: Dict[str, object] = {
            "node": {"ready": ready, "reason": reason, "draining": self.node.draining},
            "muxes": muxes,
            "pools": pools,
            "channels": channels,
            "servers": servers,
            "time": self.clock.seconds(),
        }
        if self.deploy is not None:
            status["deploy"] = self.deploy.status()
        return status
