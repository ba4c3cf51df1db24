"""
twistd plugin support: C{twistd -n muxpool --deploy DIR}.
"""

import os
import shutil
import signal
import tempfile
from types import FrameType
from typing import Any, Callable, Dict, Optional, Union

from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.resource import Resource

from muxpool._support import defaultReactor
from muxpool.app import ParentWatch, WorkerSockets, WorkerSupervisor, workerArgv
from muxpool.deploy import DeployService
from muxpool.ops import (
    PARENT_PATHS,
    AdminConfigError,
    AdminService,
    AgentService,
    NodeState,
    Operations,
    ParentNode,
    ParentResource,
    WorkerAdmin,
    checkEndpoint,
)


class Options(usage.Options):
    """
    Options for C{twistd muxpool}.
    """

    synopsis = (
        "[--deploy DIR] [--scan-interval SECONDS] [--drain-timeout SECONDS] "
        "[--admin ENDPOINT [--admin-token-file FILE]] [--agent ENDPOINT] "
        "[--drain-delay SECONDS] [--workers N]"
    )
    longdesc = (
        "Run an ISO 8583 switch from a folder of jPOS-style descriptors "
        "(<channel-adaptor>, <mux> (QMUX or MUXPool), <server>), deployed in "
        "file-name order and rescanned for changes, as Q2 does."
    )
    optParameters = [
        [
            "deploy",
            "d",
            "deploy",
            "Folder of *.xml QBean descriptors (default: ./deploy, as in Q2).",
        ],
        [
            "scan-interval",
            "s",
            2.0,
            "Seconds between rescans of the deploy folder (0: never rescan).",
            float,
        ],
        [
            "drain-timeout",
            None,
            30.0,
            "Seconds a replaced or removed bean gets to finish its in-flight requests.",
            float,
        ],
        [
            "admin",
            None,
            None,
            "Serve the admin API (status, metrics, enable/disable/drain, status page) on this "
            "endpoint, e.g. tcp:8080:interface=127.0.0.1.  Off by default.",
        ],
        [
            "admin-token-file",
            None,
            None,
            "File holding the token the admin API requires (Authorization: Bearer TOKEN); "
            "or set MUXPOOL_ADMIN_TOKEN.  Without one it listens on loopback only.",
        ],
        [
            "agent",
            None,
            None,
            "Answer HAProxy's agent check on this endpoint, e.g. tcp:9100:interface=127.0.0.1: "
            "one line per connection, 'ready up maxconn:N', 'drain' or 'down'.",
        ],
        [
            "drain-delay",
            None,
            0.0,
            "Seconds a stop (SIGTERM, SIGINT, SIGHUP) first spends draining: not ready, agent "
            "'drain', serving as usual, so balancers move new sessions away; then the "
            "graceful stop.",
            float,
        ],
        [
            "workers",
            None,
            1,
            "Run this many worker processes sharing each server's listening socket, each with "
            "its own channels, MUXes and pools (one per core; default 1: no workers).",
            int,
        ],
        ["worker", None, 0, "(internal) run as worker number N of a --workers parent.", int],
    ]

    def postOptions(self) -> None:
        directory = self["deploy"]
        if not os.path.isdir(directory):
            raise usage.UsageError(
                f"deploy folder {directory!r} does not exist "
                f"(looked in {os.path.abspath(directory)}); give one with --deploy DIR"
            )
        if self["scan-interval"] < 0 or self["drain-timeout"] < 0 or self["drain-delay"] < 0:
            raise usage.UsageError(
                "--scan-interval, --drain-timeout and --drain-delay must not be negative"
            )
        if self["workers"] < 1:
            raise usage.UsageError("--workers must be 1 or more")
        if self["admin-token-file"] and not self["admin"]:
            raise usage.UsageError(
                "--admin-token-file needs --admin ENDPOINT (the admin API is off)"
            )
        if self["agent"]:
            try:
                serverFromString(None, self["agent"])  # parsed only: nothing listens
            except ValueError as e:
                raise usage.UsageError(f"--agent {self['agent']!r}: {e}") from None
        self["admin-token"] = self._token()
        if self["admin"]:
            try:
                checkEndpoint(self["admin"], self["admin-token"])
            except AdminConfigError as e:
                raise usage.UsageError(str(e)) from None

    def _token(self):
        path = self["admin-token-file"]
        if path:
            try:
                with open(path) as f:
                    token = f.read().strip()
            except OSError as e:
                raise usage.UsageError(f"--admin-token-file {path!r}: {e.strerror}") from None
            if not token:
                raise usage.UsageError(f"--admin-token-file {path!r} is empty")
            return token
        return os.environ.get("MUXPOOL_ADMIN_TOKEN", "").strip() or None


class SwitchService(MultiService):
    """
    The switch twistd runs.

    SIGTERM, SIGINT and SIGHUP all stop it gracefully: servers take no more
    connections or requests, every request already read is answered (or
    logged to be reversed), then MUXes and links close after what is in
    flight on them.  A stop that ends cleanly exits with status 0, as
    supervisors of a payment switch expect (Twisted's default is to die by
    the signal, and SIGHUP would kill at once, with no drain).
    """

    log = Logger()

    #: The signals that stop it gracefully, by name (those the platform has).
    SIGNALS = ("SIGHUP", "SIGTERM", "SIGINT")

    def __init__(
        self, reactor, node: Union[NodeState, ParentNode, None] = None, drainDelay: float = 0.0
    ) -> None:
        MultiService.__init__(self)
        self.reactor = reactor
        self.node = node
        self.drainDelay = drainDelay
        self._previous: Dict[int, Union[Callable[[int, Optional[FrameType]], Any], int, None]] = {}
        self._stopping = False

    def startService(self) -> None:
        MultiService.startService(self)
        self._stopping = False
        # Once running: the reactor installs its own SIGTERM and SIGINT
        # handlers as it starts, after twistd has started the services.
        self.reactor.callWhenRunning(self._handleSignals)

    def _handleSignals(self) -> None:
        if not self.running or self._previous:
            return
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self._previous[signum] = signal.signal(signum, self._signalled)
            except ValueError:
                return  # not the main thread: leave the signals alone
        # Ours until the reactor has stopped: a signal during the drain (a
        # second SIGTERM from an impatient supervisor) is the same stop.
        self.reactor.addSystemEventTrigger("after", "shutdown", self._restoreSignals)

    def _restoreSignals(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _signalled(self, signum, frame) -> None:
        self.reactor.callFromThread(self._stopGracefully, signal.Signals(signum).name)

    def _stopGracefully(self, why: str) -> None:
        """
        Stop, once: a signal that comes while it is stopping (a second
        SIGTERM from an impatient supervisor) changes nothing.
        """
        if self._stopping:
            self.log.info("{why}: already stopping gracefully", why=why)
            return
        self._stopping = True
        if self.node is not None and self.drainDelay > 0:
            # Balancers (the agent check, /ready) move new sessions away
            # first; the node serves as usual meanwhile.
            self.node.drain(why)
            self.node.stopping = True
            self.log.info(
                "{why}: draining for {delay:g}s, then stopping gracefully",
                why=why,
                delay=self.drainDelay,
                event="node.stopping",
            )
            self.reactor.callLater(self.drainDelay, self._stop)
            return
        self.log.info("{why}: stopping gracefully", why=why)
        self._stop()

    def _stop(self) -> None:
        if self.node is not None:
            self.node.stopping = True
        try:
            self.reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping

    def stopService(self):
        """
        Stop every service.  The signal handlers stay the switch's until
        the reactor has stopped, so a signal meanwhile is taken as this
        same stop.
        """
        self._stopping = True
        if self.node is not None:
            self.node.stopping = True
        d = MultiService.stopService(self)

        def clean(results):
            if getattr(self.reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
                self.reactor._exitSignal = None
            return results

        return d.addBoth(clean)


def makeService(options: Options) -> SwitchService:
    """
    The switch for C{options}: a L{DeployService} on the deploy folder, and
    the admin API if asked for.
    """
    reactor = defaultReactor(None)
    if options["workers"] > 1 and not options["worker"]:
        return _parent(options, reactor)
    worker = options["worker"]
    deploy = DeployService(
        options["deploy"],
        reactor,
        scanInterval=options["scan-interval"],
        drainTimeout=options["drain-timeout"],
        sockets=WorkerSockets.fromEnvironment(reactor) if worker else None,
    )
    operations = Operations(deploy.registry, reactor, deploy)
    switch = SwitchService(reactor, operations.node, options["drain-delay"])
    deploy.setServiceParent(switch)
    if worker:
        ParentWatch(reactor, switch._stopGracefully).setServiceParent(switch)
    if options["agent"]:
        AgentService(options["agent"], operations.node, reactor).setServiceParent(switch)
    if options["admin"]:
        endpoint = _workerEndpoint(options["admin"], worker)
        AdminService(endpoint, operations, reactor, options["admin-token"]).setServiceParent(switch)
    return switch


def _parent(options: Options, reactor: Any) -> SwitchService:
    """
    The parent of C{--workers N}: it supervises the workers, and serves the
    node's one admin API and agent over the workers' private admin APIs
    (a UNIX socket each, in a folder of its own).
    """
    count = options["workers"]
    workers = None
    if options["admin"] or options["agent"]:
        folder = tempfile.mkdtemp(prefix="muxpool-workers-")  # mode 0700: the parent's own
        reactor.addSystemEventTrigger(
            "after", "shutdown", shutil.rmtree, folder, ignore_errors=True
        )
        workers = WorkerAdmin(reactor, folder, count, options["admin-token"])
    node = ParentNode(workers) if workers is not None else None
    switch = SwitchService(reactor, node, options["drain-delay"])
    WorkerSupervisor(
        count,
        options["deploy"],
        workerArgv(options, workers.endpoint if workers is not None else None),
        reactor,
        options["scan-interval"],
        stopTimeout=max(120.0, 2 * options["drain-timeout"] + 30),
    ).setServiceParent(switch)
    if node is not None and options["agent"]:
        AgentService(options["agent"], node, reactor).setServiceParent(switch)
    if node is not None and options["admin"]:
        routes: Dict[bytes, Resource] = {path: ParentResource(node) for path in PARENT_PATHS}
        AdminService(
            options["admin"], None, reactor, options["admin-token"], routes
        ).setServiceParent(switch)
    return switch


def _workerEndpoint(endpoint: str, worker: int) -> str:
    """
    Worker N's own admin endpoint: the parent's private UNIX socket path
    with N added (C{.../worker-N.sock}).
    """
    if worker and endpoint.startswith("unix:") and endpoint.endswith(".sock"):
        return f"{endpoint[: -len('.sock')]}-{worker}.sock"
    return endpoint
