"""
The deploy directory, as Q2's: every C{*.xml} is a bean, deployed in
file-name order, and the folder is rescanned so that beans are added,
replaced and removed with no downtime.

Replacing a bean starts the new one before the old one stops where the
names allow: a new adaptor takes over its QMUXes once it is ready, a new
QMUX takes its place in pools at once, and the old one is stopped only once
its requests in flight have their outcomes (or C{drainTimeout} passes).  A
server's port cannot be held twice, so an old server stops (with its grace
period) before the new one listens.  A changed file that is broken is
reported and the running bean is kept.
"""

from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional, Set, Tuple

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from muxpool.interfaces import IMUX
from muxpool.descriptors import Bean, DescriptorError, buildBean, readDescriptor
from muxpool.registry import Registry, defaultRegistry


def _stamp(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class DeployService(Service):
    """
    Deploys a folder of descriptors and keeps it deployed.

    @ivar beans: path -> the L{Bean} deployed from it.
    @ivar failed: path -> the problem, for files that could not be deployed.
    """

    log = Logger()

    def __init__(
        self,
        directory: str,
        reactor=None,
        registry: Optional[Registry] = None,
        scanInterval: float = 2.0,
        drainTimeout: float = 30.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.directory = directory
        self.reactor = reactor
        self.registry = registry if registry is not None else defaultRegistry
        self.scanInterval = scanInterval
        self.drainTimeout = drainTimeout
        self.beans: Dict[str, Bean] = {}
        self.failed: Dict[str, str] = {}
        self._stamps: Dict[str, Tuple[int, int]] = {}
        self._missing: Set[Tuple[str, str]] = set()
        self._retiring: List[Deferred] = []
        self._handovers: Set[int] = set()
        self._loop: Optional[LoopingCall] = None

    # -- service --------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self.log.info("deploying {directory}", directory=os.path.abspath(self.directory))
        self.scan()
        if self.scanInterval:
            self._loop = LoopingCall(self.scan)
            self._loop.clock = self.reactor
            self._loop.start(self.scanInterval, now=False)

    def stopService(self) -> Deferred:
        """
        Stop every bean (last deployed first); fires when all are stopped.
        """
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self._shutdown()

    @inlineCallbacks
    def _shutdown(self):
        """
        Undeploy in reverse file order, one bean after another, as Q2 does:
        the front server drains its in-flight requests before the MUXes and
        links they travel on are taken away.
        """
        for path in sorted(self.beans, reverse=True):
            bean = self.beans.pop(path)
            yield self._retire(bean)
        yield DeferredList(list(self._retiring))

    # -- scanning ---------------------------------------------------------------

    def scan(self) -> None:
        """
        Deploy new and changed files, undeploy removed ones, then wire.
        """
        files = sorted(glob.glob(os.path.join(self.directory, "*.xml")))
        for path in files:
            stamp = _stamp(path)
            if stamp is None or self._stamps.get(path) == stamp:
                continue
            self._stamps[path] = stamp
            self._load(path)
        removed = []
        for path in sorted(set(self.beans) - set(files), reverse=True):
            self._stamps.pop(path, None)
            self.log.info("{path}: removed; undeploying {name}", path=path,
                          name=self.beans[path].name)
            removed.append(self.beans.pop(path))
        # MUXes and adaptors first; servers removed with them stop only once
        # those are done (a local issuer outlives the link that uses it).
        retiring = [self._retire(b, alongside=removed) for b in removed if b.kind != "server"]
        servers = [b for b in removed if b.kind == "server"]
        if servers:
            for bean in servers:
                self.registry.unregister(bean.name, bean.service)
            after = DeferredList(retiring)
            after.addBoth(lambda _: DeferredList([self._retire(b) for b in servers]))
            self._track(after)
        for path in set(self.failed) - set(files):
            del self.failed[path]
            self._stamps.pop(path, None)
        self._wire()

    def _load(self, path: str) -> None:
        old = self.beans.get(path)
        try:
            root = readDescriptor(path)
            bean = buildBean(path, root, self.reactor, self.registry)
            for other, deployed in self.beans.items():
                if other != path and deployed.name == bean.name:
                    raise DescriptorError(path, root.line, root.tag,
                                          f"name {bean.name!r} is already deployed from {other}")
        except DescriptorError as e:
            self.failed[path] = str(e)
            self.log.error("cannot deploy {error}{kept}", error=str(e),
                           kept=f" (keeping the running {old.name})" if old else "")
            return
        self.failed.pop(path, None)
        self.beans[path] = bean
        if old is not None:
            self.log.info("{path}: changed; redeploying {name}", path=path, name=bean.name)
        else:
            self.log.info("{path}: deploying {kind} {name}", path=path, kind=bean.kind, name=bean.name)
        if old is not None and old.kind == "server":
            # A port cannot be held twice: the old server goes first.
            self.registry.unregister(old.name, old.service)
            d = self._stop(old)
            d.addCallback(lambda _: self._start(bean))
            self._track(d)
            return
        self._start(bean)
        if old is not None:
            self._retire(old, replacedBy=bean)

    def _start(self, bean: Bean) -> None:
        self.registry.register(bean.name, bean.service)
        d = maybeDeferred(bean.service.startService)

        def failed(failure):
            message = f"{bean.path}: {bean.name} did not start: {failure.getErrorMessage()}"
            self.log.error("{message}", message=message)
            self.failed[bean.path] = message
            if self.beans.get(bean.path) is bean:
                del self.beans[bean.path]
            self.registry.unregister(bean.name, bean.service)

        d.addErrback(failed)

    # -- wiring -------------------------------------------------------------------

    def _beansOfKind(self, kind: str) -> List[Bean]:
        return [b for b in self.beans.values() if b.kind == kind]

    def _adaptorFor(self, mux: Bean) -> Optional[Bean]:
        for adaptor in self._beansOfKind("channel-adaptor"):
            if mux.outQueue and adaptor.inQueue == mux.outQueue:
                return adaptor
            if f"{adaptor.name}.ready" in mux.readyNames:
                return adaptor
        return None

    def _wire(self) -> None:
        for bean in self._beansOfKind("qmux"):
            adaptor = self._adaptorFor(bean)
            mux = bean.service
            if adaptor is None:
                self._warnMissing(bean, bean.outQueue or ",".join(bean.readyNames), "channel")
            elif mux.link is None:
                mux.setLink(adaptor.service)
            elif mux.link is not adaptor.service:
                self._handover(mux, mux.link, adaptor.service)
        for bean in list(self._beansOfKind("pool")):
            members = []
            for name in bean.memberNames:
                obj = self.registry.lookup(name)
                if obj is not bean.service and IMUX.providedBy(obj):
                    members.append(obj)
                else:
                    self._warnMissing(bean, name, "MUX")
            pool = bean.service
            if not members and not pool.members:
                message = (f"{bean.path}: pool {bean.name}: none of its <muxes> "
                           f"({' '.join(bean.memberNames)}) is deployed")
                self.log.error("cannot deploy {message}", message=message)
                self.failed[bean.path] = message
                del self.beans[bean.path]
                self.registry.unregister(bean.name, pool)
                self._track(self._stop(bean))
                continue
            if tuple(members) != pool.members:
                pool.setMembers(members)

    def _warnMissing(self, bean: Bean, name: str, what: str) -> None:
        key = (bean.path, name)
        if key not in self._missing:
            self._missing.add(key)
            self.log.warn("{path}: {bean}: {what} {name!r} is not deployed; running without it",
                          path=bean.path, bean=bean.name, what=what, name=name)

    def _handover(self, mux, old, new) -> None:
        """
        Move C{mux} from link C{old} to C{new} once C{new} is ready; stop
        listening to C{old} once what was written on it has its outcome.
        """
        if id(new) in self._handovers:
            return
        self._handovers.add(id(new))

        def ready(_):
            self._handovers.discard(id(new))
            if mux.link is not old:
                return
            mux.setLink(new, keepPrevious=True)
            drained = mux.whenDrained(old).addTimeout(self.drainTimeout, self.reactor)
            drained.addBoth(lambda _: mux.detachLink(old))

        new.ready.whenReady().addCallback(ready)

    # -- retiring -------------------------------------------------------------

    def _track(self, d: Deferred) -> Deferred:
        self._retiring.append(d)
        d.addBoth(lambda result: (self._retiring.remove(d) if d in self._retiring else None, result)[1])
        return d

    def _retire(self, bean: Bean, replacedBy: Optional[Bean] = None,
                alongside: List[Bean] = ()) -> Deferred:
        """
        Take C{bean} out of service once its in-flight requests are done
        (C{alongside}: beans removed in the same scan, whose requests count).
        """
        self.registry.unregister(bean.name, bean.service)  # no-op if replaced
        service = bean.service
        if bean.kind == "qmux":
            drained = service.whenDrained()
        elif bean.kind == "channel-adaptor":
            users = [b.service for b in list(self.beans.values()) + list(alongside)
                     if b.kind == "qmux" and service in b.service.links]
            if replacedBy is not None and users:
                drained = replacedBy.service.ready.whenReady().addCallback(
                    lambda _: gatherResults([m.whenDrained(service) for m in users]))
            else:
                drained = gatherResults([m.whenDrained(service) for m in users])
        else:
            drained = succeed(None)
        drained.addTimeout(self.drainTimeout, self.reactor)
        return self._track(drained.addBoth(lambda _: self._stop(bean)))

    def _stop(self, bean: Bean) -> Deferred:
        d = maybeDeferred(bean.service.stopService)
        if bean.kind == "qmux":
            for link in bean.service.links:
                bean.service.detachLink(link)

        def failed(failure):
            self.log.failure("{name} did not stop cleanly", failure, name=bean.name)

        return d.addErrback(failed)
