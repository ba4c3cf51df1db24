"""
The deploy directory, as Q2's: every C{*.xml} is a bean, deployed in
file-name order, and the folder is rescanned so that beans are added,
replaced and removed with no downtime.

Replacing a bean starts the new one before the old one stops where the
names allow: a new adaptor takes over its QMUXes once it is ready, a new
QMUX takes its place in pools at once, and the old one is stopped only once
its requests in flight have their outcomes (or C{drainTimeout} passes).  A
server's port cannot be held twice, so an old server stops (with its grace
period) before the new one listens.

Nothing a file does stops the scanning: a file that cannot be deployed, for
whatever reason, is reported with its name and kept aside (the running bean
it would have replaced, if any, stays), and it is tried again when it, or a
file it is built from (a packager file, a Python module it names), changes.
A file renamed with the same content is the same bean.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Dict, Generator, List, Optional, Set, Tuple

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from muxpool._config import Stamp, fileStamp
from muxpool._support import defaultReactor, describeError
from muxpool.deploy._bean import Bean
from muxpool.deploy._builders import buildBean
from muxpool.deploy._dependencies import dependenciesOf
from muxpool.deploy._folder import descriptorFiles
from muxpool.deploy._xml import DescriptorError, Node, readDescriptor, readSource
from muxpool.interfaces import IMUX, ILink, ISocketSource
from muxpool.mux import QMUX
from muxpool.registry import Registry, defaultRegistry


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
        reactor: Optional[IReactorTime] = None,
        registry: Optional[Registry] = None,
        scanInterval: float = 2.0,
        drainTimeout: float = 30.0,
        sockets: Optional[ISocketSource] = None,
    ) -> None:
        reactor = defaultReactor(reactor)
        self.directory = directory
        self.reactor = reactor
        self.registry = registry if registry is not None else defaultRegistry
        self.scanInterval = scanInterval
        self.drainTimeout = drainTimeout
        self.sockets = sockets
        self.beans: Dict[str, Bean] = {}
        self.failed: Dict[str, str] = {}
        self._stamps: Dict[str, Stamp] = {}
        self._dependencies: Dict[str, Dict[str, Optional[Stamp]]] = {}
        self._warned: Set[Tuple[str, str]] = set()
        self._replaced: List[Tuple[Bean, Bean]] = []
        self._retiring: List[Deferred] = []
        self._handovers: Dict[object, Deferred] = {}
        self._emptyPools: Set[str] = set()
        self._draining: Set[Bean] = set()
        self._loop: Optional[LoopingCall] = None
        self._empty = False
        self._unreadableWhy: Optional[str] = None
        #: Waits for a replacement adaptor to be ready (see L{_retire}).
        self._replacing: Set[Deferred] = set()

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
        self._loop = None
        for d in list(self._handovers.values()):
            d.cancel()
        for d in list(self._replacing):
            d.cancel()  # the old links drain now, without waiting for them
        # What it knew of the folder goes with its beans: started again, it
        # deploys every file afresh.
        self._stamps.clear()
        self._dependencies.clear()
        self.failed.clear()
        self._warned.clear()
        self._emptyPools.clear()
        self._empty = False
        self._unreadableWhy = None
        return self._shutdown()

    @inlineCallbacks
    def _shutdown(self) -> Generator[Deferred, Any, None]:
        """
        Undeploy in reverse file order, one bean after another, as Q2 does:
        the front server drains its in-flight requests before the MUXes and
        links they travel on are taken away.
        """
        for path in sorted(self.beans, reverse=True):
            bean = self.beans.pop(path)
            yield self._retire(bean)
        yield DeferredList(list(self._retiring))

    def status(self) -> Dict[str, object]:
        """
        The deploy folder: what is deployed from which file, what failed and
        why.
        """
        return {
            "directory": os.path.abspath(self.directory),
            "deployed": [
                {"file": os.path.basename(path), "name": bean.name, "kind": bean.kind}
                for path, bean in sorted(self.beans.items())
            ],
            "failed": {
                os.path.basename(path): error for path, error in sorted(self.failed.items())
            },
        }

    # -- scanning ---------------------------------------------------------------

    def buildBean(self, path: str, root: Node) -> Bean:
        """
        Build (not start) the bean of the descriptor at C{path}, parsed as
        C{root}: see L{muxpool.deploy.buildBean}.  Whatever it raises makes
        that file fail, naming it, and only that file.
        """
        return buildBean(path, root, self.reactor, self.registry, self.sockets)

    def scan(self) -> None:
        """
        Deploy new and changed files, undeploy removed ones, then wire.
        Never raises: the folder is scanned again next time whatever
        happened (an unexpected error is logged as one).
        """
        try:
            self._scan()
        except Exception:
            self.log.failure(
                "deploy scan of {directory} failed; scanning goes on", directory=self.directory
            )

    def _scan(self) -> None:
        try:
            files = descriptorFiles(self.directory)
        except OSError as e:
            self._unreadable(e)
            return
        if self._unreadableWhy is not None:
            self.log.info("deploy folder {directory} can be read again", directory=self.directory)
            self._unreadableWhy = None
        if not files and not self._empty:
            self.log.warn(
                "deploy folder {directory} has no *.xml descriptors: nothing deployed",
                directory=os.path.abspath(self.directory),
            )
        self._empty = not files
        present = set(files)
        gone = {path: bean for path, bean in self.beans.items() if path not in present}
        for path in files:
            stamp = fileStamp(path)
            if stamp is None:
                continue
            if self._stamps.get(path) == stamp and not self._dependencyChanged(path):
                continue
            self._stamps[path] = stamp
            self._load(path, gone)
        self._undeploy(gone)
        for path in set(self.failed) - present:
            del self.failed[path]
            self._stamps.pop(path, None)
            self._dependencies.pop(path, None)
        self._wire()
        replaced, self._replaced = self._replaced, []
        self._draining.update(old for old, _ in replaced)
        for old, new in replaced:
            self._retire(old, replacedBy=new)

    def _unreadable(self, error: OSError) -> None:
        """
        The folder cannot be read now (no file descriptor left, say): what
        is deployed stays as it is, said once per reason, not per scan.
        """
        why = error.strerror or type(error).__name__
        if why != self._unreadableWhy:
            self.log.error(
                "cannot read deploy folder {directory}: {why}; nothing is changed until it can be",
                directory=os.path.abspath(self.directory),
                why=why,
                event="deploy.unreadable",
            )
        self._unreadableWhy = why

    def _dependencyChanged(self, path: str) -> bool:
        """
        Whether a failed file should be tried again: a file it is built
        from changed.  A changed Python module is reloaded, so the retry
        sees the fix.
        """
        deps = self._dependencies.get(path)
        changed = [dep for dep, stamp in (deps or {}).items() if fileStamp(dep) != stamp]
        if changed:
            importlib.invalidate_caches()
            for module in list(sys.modules.values()):
                if getattr(module, "__file__", None) in changed:
                    try:
                        importlib.reload(module)
                    except Exception:
                        pass  # the retry reports it, naming the file
        return bool(changed)

    def _load(self, path: str, gone: Dict[str, Bean]) -> None:
        """
        Build the bean in C{path} and deploy it: as new, as a replacement
        of the bean the file held, or (a renamed file) of the bean a file
        gone this scan held under the same name.
        """
        old = self.beans.get(path)
        source = b""
        root = None
        try:
            source = readSource(path)
            root = readDescriptor(path, source=source)  # read once: what is parsed is compared
            bean = self.buildBean(path, root)
        except Exception as e:
            self._failed(path, root, old, e)
            return
        bean.source = source
        for other, deployed in self.beans.items():
            if other == path or deployed.name != bean.name:
                continue
            if other in gone:
                old = gone.pop(other)  # renamed
                del self.beans[other]
                self._stamps.pop(other, None)
                if old.source == source:
                    self.log.info(
                        "{path}: renamed from {old}; {name} keeps running",
                        path=path,
                        old=other,
                        name=old.name,
                    )
                    old.path = path
                    self.beans[path] = old
                    self.failed.pop(path, None)
                    self._dependencies.pop(path, None)
                    return
                break
            self._failed(
                path,
                root,
                old,
                DescriptorError(
                    path,
                    root.line,
                    root.tag,
                    f"name {bean.name!r} is already deployed from {other}",
                ),
            )
            return
        self.failed.pop(path, None)
        self._dependencies.pop(path, None)
        self.beans[path] = bean
        if old is not None:
            self.log.info(
                "{path}: changed; redeploying {name}",
                path=path,
                name=bean.name,
                event="deploy.redeployed",
            )
        else:
            self.log.info(
                "{path}: deploying {kind} {name}",
                path=path,
                kind=bean.kind,
                name=bean.name,
                event="deploy.deployed",
            )
        if old is not None and old.kind == "server":
            self.registry.unregister(old.name, old.service)
            if not (bean.kind == "server" and bean.service.takeOver(old.service)):
                # A port cannot be held twice: the old server goes first.
                d = self._stop(old)
                d.addCallback(lambda _: self._start(bean))
                self._track(d)
                return
        self._start(bean)
        if old is not None:
            self._replaced.append((old, bean))

    def _failed(
        self, path: str, root: Optional[Node], old: Optional[Bean], error: Exception
    ) -> None:
        if isinstance(error, DescriptorError):
            message = str(error)
        else:
            message = f"{path}: {describeError(error)}"
            self.log.failure("{path}: unexpected error while deploying", path=path)
        self.failed[path] = message
        try:
            deps = dependenciesOf(path, root)
        except Exception:
            deps = [path]
        self._dependencies[path] = {dep: fileStamp(dep) for dep in deps if dep != path}
        self.log.error(
            "cannot deploy {error}{kept}",
            error=message,
            kept=f" (keeping the running {old.name})" if old else "",
            event="deploy.failed",
            path=path,
        )

    def _undeploy(self, gone: Dict[str, Bean]) -> None:
        """
        Undeploy the beans whose files were removed: MUXes and adaptors
        first; servers removed with them stop only once those are done (a
        local issuer outlives the link that uses it).
        """
        removed = []
        for path in sorted(gone, reverse=True):
            if self.beans.get(path) is not gone[path]:
                continue
            self._stamps.pop(path, None)
            self.log.info(
                "{path}: removed; undeploying {name}",
                path=path,
                name=gone[path].name,
                event="deploy.undeployed",
            )
            removed.append(self.beans.pop(path))
        for bean in removed:
            self.registry.unregister(bean.name, bean.service)
        self._wire()
        self._draining.update(removed)
        retiring = [self._retire(b) for b in removed if b.kind != "server"]
        servers = [b for b in removed if b.kind == "server"]
        if servers:
            after = DeferredList(retiring)
            after.addBoth(lambda _: DeferredList([self._retire(b) for b in servers]))
            self._track(after)

    def _start(self, bean: Bean) -> None:
        d = maybeDeferred(bean.service.startService)
        self.registry.register(bean.name, bean.service)  # found by name once running

        def failed(failure: Failure) -> None:
            assert failure.value is not None  # a Failure holds its exception
            message = f"{bean.path}: {bean.name} did not start: {describeError(failure.value)}"
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
                self._warnMissing(
                    bean,
                    bean.outQueue or ",".join(bean.readyNames),
                    "channel",
                    "it is not ready until one is",
                )
                continue
            self._warned.discard((bean.path, bean.outQueue or ",".join(bean.readyNames)))
            if mux.link is None:
                mux.setLink(adaptor.service)
            elif mux.link is not adaptor.service:
                self._handover(mux, mux.link, adaptor.service)
        for bean in self._beansOfKind("pool"):
            members = []
            for name in bean.memberNames:
                obj = self.registry.lookup(name)
                if obj is not bean.service and IMUX.providedBy(obj):
                    members.append(obj)
                    self._warned.discard((bean.path, name))
                else:
                    self._warnMissing(bean, name, "MUX", "running without it")
            pool = bean.service
            if not members and bean.path not in self._emptyPools:
                self._emptyPools.add(bean.path)
                self.log.warn(
                    "{path}: pool {name}: none of its <muxes> ({muxes}) is deployed; "
                    "it stays deployed, not usable until one is",
                    path=bean.path,
                    name=bean.name,
                    muxes=" ".join(bean.memberNames),
                )
            elif members and bean.path in self._emptyPools:
                self._emptyPools.discard(bean.path)
                self.log.info(
                    "{path}: pool {name} has members again: {members}",
                    path=bean.path,
                    name=bean.name,
                    members=" ".join(m.name for m in members),
                )
            if tuple(members) != pool.members:
                pool.setMembers(members)
        for bean in self.beans.values():
            for ref in bean.references:
                if ref.name in self.registry:
                    self._warned.discard((bean.path, ref.name))
                else:
                    self._warnMissing(
                        bean,
                        ref.name,
                        ref.what,
                        f"{ref.consequence} ({os.path.basename(bean.path)}:"
                        f"{ref.line} <{ref.element}>)",
                    )

    def _warnMissing(self, bean: Bean, name: str, what: str, consequence: str) -> None:
        """
        Warn once (per file and name) that C{bean} names something that is
        not deployed.
        """
        key = (bean.path, name)
        if key not in self._warned:
            self._warned.add(key)
            self.log.warn(
                "{path}: {bean}: {what} {name!r} is not deployed; {consequence}",
                path=bean.path,
                bean=bean.name,
                what=what,
                name=name,
                consequence=consequence,
            )

    def _handover(self, mux: QMUX, old: ILink, new: ILink) -> None:
        """
        Move C{mux} from link C{old} to C{new} once C{new} is ready; stop
        listening to C{old} once what was written on it has its outcome.
        """
        if mux in self._handovers:
            self._handovers.pop(mux).cancel()

        def ready(_: object) -> None:
            self._handovers.pop(mux, None)
            if mux.link is not old or not mux.running:
                return
            mux.setLink(new, keepPrevious=True)
            drained = mux.whenDrained(old).addTimeout(self.drainTimeout, self.reactor)
            drained.addBoth(lambda _: mux.detachLink(old))

        d = new.ready.whenReady()
        self._handovers[mux] = d
        d.addCallbacks(ready, lambda failure: None)

    # -- retiring -------------------------------------------------------------

    def _track(self, d: Deferred) -> Deferred:
        self._retiring.append(d)

        def untrack(result: object) -> object:
            if d in self._retiring:
                self._retiring.remove(d)
            return result

        d.addBoth(untrack)
        return d

    def _retire(self, bean: Bean, replacedBy: Optional[Bean] = None) -> Deferred:
        """
        Take C{bean} out of service once its in-flight requests are done.
        A QMUX and a pool drain themselves when stopped; an adaptor waits
        for every QMUX that uses it, deployed or itself draining (and, if
        replaced, for its replacement to be ready).
        """
        self.registry.unregister(bean.name, bean.service)  # no-op if replaced
        self._draining.add(bean)
        service = bean.service
        if bean.kind == "channel-adaptor":
            users = [
                b.service
                for b in list(self.beans.values()) + list(self._draining)
                if b.kind == "qmux" and service in b.service.links
            ]
            if replacedBy is not None and users:
                # Until the replacement is ready, or the service stops (a
                # replacement never ready must not hold up a stop).
                ready = replacedBy.service.ready.whenReady()
                self._replacing.add(ready)
                ready.addBoth(self._replacementWaitEnded, ready)
                drained = ready.addCallback(
                    lambda _: gatherResults(
                        [m.whenDrained(service) for m in users], consumeErrors=True
                    )
                )
            else:
                drained = gatherResults([m.whenDrained(service) for m in users], consumeErrors=True)
            drained.addTimeout(self.drainTimeout, self.reactor)
            return self._track(drained.addBoth(lambda _: self._stop(bean)))
        return self._track(self._stop(bean))

    def _replacementWaitEnded(self, result: object, ready: Deferred) -> object:
        """
        A wait for a replacement ended: it is ready, or the wait was
        cancelled by a stop (then the old link drains at once).
        """
        self._replacing.discard(ready)
        if isinstance(result, Failure) and result.check(CancelledError):
            return None
        return result

    def _stop(self, bean: Bean) -> Deferred:
        d = maybeDeferred(bean.service.stopService)

        def failed(failure: Failure) -> None:
            assert failure.value is not None  # a Failure holds its exception
            self.log.error(
                "{path}: {name} did not stop cleanly: {error}",
                path=bean.path,
                name=bean.name,
                error=describeError(failure.value),
            )

        def stopped(_: object) -> None:
            self._draining.discard(bean)

        return d.addErrback(failed).addCallback(stopped)
