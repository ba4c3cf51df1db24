"""
twistd plugin support: C{twistd -n muxpool --deploy DIR}.
"""

import os
import signal
from types import FrameType
from typing import Any, Callable, Dict, Optional, Union

from twisted.application.service import MultiService
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python import usage

from muxpool._config import parseEndpoint, withPort
from muxpool._support import defaultReactor
from muxpool.app import ParentWatch, WorkerSockets, WorkerSupervisor, workerArgv
from muxpool.deploy import DeployService
from muxpool.ops import AdminConfigError, AdminService, Operations, checkEndpoint


class Options(usage.Options):
    """
    Options for C{twistd muxpool}.
    """

    synopsis = (
        "[--deploy DIR] [--scan-interval SECONDS] [--drain-timeout SECONDS] "
        "[--admin ENDPOINT [--admin-token-file FILE]] [--workers N]"
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
        if self["scan-interval"] < 0 or self["drain-timeout"] < 0:
            raise usage.UsageError("--scan-interval and --drain-timeout must not be negative")
        if self["workers"] < 1:
            raise usage.UsageError("--workers must be 1 or more")
        if self["admin-token-file"] and not self["admin"]:
            raise usage.UsageError(
                "--admin-token-file needs --admin ENDPOINT (the admin API is off)"
            )
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

    def __init__(self, reactor) -> None:
        MultiService.__init__(self)
        self.reactor = reactor
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
        self.log.info("{why}: stopping gracefully", why=why)
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
    switch = SwitchService(reactor)
    if options["workers"] > 1 and not options["worker"]:
        WorkerSupervisor(
            options["workers"],
            options["deploy"],
            workerArgv(options),
            reactor,
            options["scan-interval"],
            stopTimeout=max(120.0, 2 * options["drain-timeout"] + 30),
        ).setServiceParent(switch)
        return switch
    worker = options["worker"]
    deploy = DeployService(
        options["deploy"],
        reactor,
        scanInterval=options["scan-interval"],
        drainTimeout=options["drain-timeout"],
        sockets=WorkerSockets.fromEnvironment(reactor) if worker else None,
    )
    deploy.setServiceParent(switch)
    if worker:
        ParentWatch(reactor, switch._stopGracefully).setServiceParent(switch)
    if options["admin"]:
        operations = Operations(deploy.registry, reactor, deploy)
        endpoint = options["admin"]
        port = parseEndpoint(endpoint).port
        if worker > 1 and port is not None:
            endpoint = withPort(endpoint, port + worker - 1)  # worker N: the given port + N - 1
        AdminService(endpoint, operations, reactor, options["admin-token"]).setServiceParent(switch)
    return switch
