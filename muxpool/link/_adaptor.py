"""
ChannelAdaptor: a service that keeps one outbound channel connected.

Reconnection with capped, jittered backoff comes from Twisted's
C{ClientService}; on top of it the adaptor keeps a ready state (connected
and, if configured, signed on), jPOS keep-alive frames when idle, TCP
keep-alive, and an ISO echo (0800/301) that detects a peer that keeps TCP
open but no longer answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, Logger, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer, provider

from muxpool._support import Waiters, backoffDelay, cancelTimer, defaultReactor, describeError
from muxpool.channel import (
    ACCEPT_WAIT,
    ChannelSpec,
    ClientTLS,
    IChannelOwner,
    ISOChannelProtocol,
    describeTLSFailure,
    isTLSFailure,
    wrapTLS,
)
from muxpool.interfaces import IProbe, IReconnect
from muxpool.iso import ECHO, SIGN_OFF, SIGN_ON, PackError
from muxpool.link._base import LinkBase
from muxpool.link._network import NetworkExchange

#: Failures in a row reconnected at the configured delay (an issuer
#: restarting), before the delay grows.
FEW_FAILURES = 5

#: Where an adaptor connects: a Twisted client endpoint string (C{tcp:},
#: C{tls:}, C{unix:}), an endpoint, or a C{(host, port)} pair.
Target = Union[str, IStreamClientEndpoint, Tuple[str, int]]


@dataclass(frozen=True)
class AdaptorSettings:
    """
    How a L{ChannelAdaptor} keeps its channel up.  All times are in seconds.

    @ivar reconnectDelay: jPOS C{reconnect-delay}: a reconnect comes this
        long after a connection is lost or an attempt fails.  Failures that
        persist (more than L{FEW_FAILURES} in a row: attempts that fail,
        connections dropped for a failed echo, sign-on or idle check) grow
        the delay by half each time up to C{maxReconnectDelay} (default four
        times the base); a connection that proves healthy starts again from
        the base.  Each
        delay is varied by up to 10% either way so a fleet of adaptors does
        not reconnect in step.
    @ivar connectTimeout: give up a connection attempt after this long.
    @ivar idleTimeout: jPOS channel C{timeout}: with nothing received for
        this long the connection is dropped and reconnected, as jPOS's read
        timeout does, with or without keep-alive.
    @ivar keepAlive: jPOS C{<keep-alive>}: send a zero-length keep-alive
        frame when nothing was sent for C{keepAliveInterval}.
    @ivar keepAliveInterval: default C{reconnectDelay}, as in jPOS, whose
        sender sends a keep-alive when it waited that long for a message.
    @ivar tcpKeepAlive: set SO_KEEPALIVE on each connection.
    @ivar signOn: after connecting, send 0800 (70=001); the link is ready
        only once it is answered 39=00.
    @ivar echoInterval: send 0800 (70=301) after this long with nothing
        received; an echo unanswered within C{echoTimeout} drops the link.
    @ivar tls: speak TLS (a L{ClientTLS}): the link is ready only once the
        handshake is done (the issuer verified against the CA file and host
        name); a failed handshake is a failed connection, logged with
        OpenSSL's reason and retried with the backoff.
    """

    reconnectDelay: float = 10.0
    maxReconnectDelay: Optional[float] = None
    connectTimeout: Optional[float] = None
    idleTimeout: Optional[float] = None
    keepAlive: bool = False
    keepAliveInterval: Optional[float] = None
    tcpKeepAlive: bool = False
    signOn: bool = False
    echoInterval: Optional[float] = None
    echoTimeout: float = 10.0
    tls: Optional[ClientTLS] = None

    @property
    def reconnectCap(self) -> float:
        """
        The longest reconnect delay: C{maxReconnectDelay}, or four times
        C{reconnectDelay}.
        """
        if self.maxReconnectDelay is not None:
            return self.maxReconnectDelay
        return 4 * self.reconnectDelay

    @property
    def keepAliveEvery(self) -> float:
        """
        How long with nothing sent before a keep-alive frame goes.
        """
        return self.keepAliveInterval or self.reconnectDelay

    @property
    def handshakeTimeout(self) -> float:
        """
        How long a TLS handshake may take: the connect timeout, else the
        echo timeout.
        """
        return self.connectTimeout or self.echoTimeout


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """
    Wraps the adaptor's endpoint: gives up a connection attempt after
    C{timeout} seconds, and tells the adaptor why an attempt failed
    (ClientService retries, but never says why).
    """

    def __init__(
        self, endpoint: IStreamClientEndpoint, adaptor: "ChannelAdaptor", timeout: Optional[float]
    ) -> None:
        self._endpoint = endpoint
        self._adaptor = adaptor
        self._timeout = timeout

    def connect(self, factory: IProtocolFactory) -> Deferred:
        d = self._endpoint.connect(factory)
        if self._timeout:
            d.addTimeout(self._timeout, self._adaptor.clock)
        return d.addErrback(self._adaptor._connectFailed)


def clientEndpoint(reactor: IReactorTime, target: Target) -> IStreamClientEndpoint:
    """
    The endpoint to connect to for C{target} (see L{Target}).
    """
    if isinstance(target, str):
        return clientFromString(reactor, target)
    if isinstance(target, tuple):
        host, port = target
        return HostnameEndpoint(reactor, host, int(port))
    return target


def describeTarget(target: Target) -> str:
    """
    Where an adaptor connects, for logs and status.
    """
    if isinstance(target, str):
        return target
    if isinstance(target, tuple):
        return f"{target[0]}:{target[1]}"
    return repr(target)


@provider(ILogObserver)
def _withoutRetries(event: Dict[str, Any]) -> None:
    """
    Twisted's ClientService events but its line per reconnect attempt
    ("Scheduling retry N to connect ..."): the adaptor says why a
    connection fails itself, once per change.
    """
    if not str(event.get("log_format", "")).startswith("Scheduling retry"):
        globalLogPublisher(event)


class _ClientService(ClientService):
    """
    Twisted's ClientService, without a log line per reconnect attempt.
    """

    _log = Logger(observer=_withoutRetries)


class _ChannelFactory(Factory):
    noisy = False

    def __init__(self, adaptor: "ChannelAdaptor") -> None:
        self.adaptor = adaptor

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        adaptor = self.adaptor
        protocol = ISOChannelProtocol(adaptor.spec, adaptor, adaptor.clock)
        if adaptor.tlsOptions is not None:
            # A server's acceptance must be known well within the handshake timeout.
            wait = min(ACCEPT_WAIT, adaptor.settings.handshakeTimeout / 2)
            return wrapTLS(protocol, adaptor.tlsOptions, True, adaptor.clock, wait)
        return protocol


@implementer(IChannelOwner, IProbe, IReconnect)
class ChannelAdaptor(LinkBase, Service):
    """
    Keeps one outbound channel connected to C{target} (see L{Target}),
    as its L{AdaptorSettings} say; an L{ILink} for a QMUX.

    @param jitter: a random number in [0, 1) for each reconnect delay.
    @ivar lastFailure: why the last connection attempt or connection
        failed (None once connected and healthy).
    """

    name: str
    spec: ChannelSpec

    def __init__(
        self,
        name: str,
        spec: ChannelSpec,
        target: Target,
        reactor: Optional[IReactorTime] = None,
        settings: AdaptorSettings = AdaptorSettings(),
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        reactor = defaultReactor(reactor)
        LinkBase.__init__(self, name, spec, reactor)
        self.setName(name)
        self.clock = reactor
        self.settings = settings
        self.target = describeTarget(target)
        self.endpoint = clientEndpoint(reactor, target)
        self.tlsOptions = settings.tls.options() if settings.tls is not None else None
        self._handshakeFailure: Optional[str] = None  # why we gave up a handshake
        self.signedOn = False
        self.lastEcho: Optional[float] = None
        self.ready.addObserver(self._readyChanged)
        self.counters = {
            "connects": 0,
            "disconnects": 0,
            "connect_failures": 0,
            "echo_failures": 0,
            "sign_on_failures": 0,
            "idle_timeouts": 0,
            "bad_frames": 0,
            "resyncs": 0,
        }
        self.lastFailure: Optional[str] = None
        self._jitter = jitter
        self._failures = 0
        self._network = NetworkExchange(reactor)
        self._alive = Waiters()
        self._handshakeTimer: Optional[IDelayedCall] = None
        self._idleTimer: Optional[IDelayedCall] = None
        self._signedOff: Optional[IDelayedCall] = None
        self._client = _ClientService(
            _ReportingEndpoint(self.endpoint, self, settings.connectTimeout),
            _ChannelFactory(self),
            retryPolicy=self._retryDelay,
            clock=reactor,
        )

    #: How long a peer that signed off may keep the connection.
    signOffLinger = 30.0

    def __repr__(self) -> str:
        return f"<ChannelAdaptor {self.name}>"

    # -- service ------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self._client.startService()

    def stopService(self) -> Deferred:
        """
        Stop reconnecting and close the connection; fires when it is closed.
        """
        Service.stopService(self)
        self._alive.cancel()
        return self._client.stopService()

    def status(self) -> Dict[str, object]:
        """
        The channel as an operator sees it.
        """
        now = self.clock.seconds()
        return {
            "kind": "channel-adaptor",
            "name": self.name,
            "running": bool(self.running),
            "target": self.target,
            "ready": bool(self.ready),
            "connected": self.isConnected(),
            "tls": self.settings.tls is not None,
            "signed_on": self.signedOn,
            "last_failure": self.lastFailure,
            "last_echo_seconds_ago": None
            if self.lastEcho is None
            else round(now - self.lastEcho, 3),
            "peer": self.protocol.peer if self.protocol is not None else None,
            "counters": dict(self.counters),
        }

    def whenConnected(self, failAfterFailures: Optional[int] = None) -> Deferred:
        """
        Fires with the connection's protocol once connected (at once if it
        is); with C{failAfterFailures}, fails with the reason after that many
        failed attempts in a row.
        """
        connected = self._client.whenConnected(failAfterFailures=failAfterFailures)
        # ClientService fires it from inside its state machine, which must
        # not be re-entered (by stopService, say): hand it on next turn.
        return connected.addBoth(lambda result: deferLater(self.clock, 0, lambda: result))

    # -- reconnecting ---------------------------------------------------------

    def _retryDelay(self, attempt: int) -> float:
        """
        ClientService's retry policy.  Its own attempt count restarts on
        every connection, even one that fails its first echo; ours counts
        failures until the link proves healthy, so a hung peer that still
        accepts connections is retried with a growing delay, not at once.
        """
        # A peer that restarts fails a few attempts: each comes at the
        # configured delay, as jPOS's does; only failures that persist
        # beyond those grow the delay.
        settings = self.settings
        persisting = max(0, self._failures - FEW_FAILURES)
        return backoffDelay(
            persisting, settings.reconnectDelay, settings.reconnectCap, 1.5, self._jitter
        )

    def _connectFailed(self, failure: Failure) -> Failure:
        if not self.running:
            return failure  # stopped while connecting: not a failure of the peer
        self._failures += 1
        self.counters["connect_failures"] += 1
        self._noteFailure(f"cannot connect to {self.target}: {_reason(failure)}")
        return failure

    def _noteFailure(self, why: str) -> None:
        """
        Log C{why} if it is news: once per change of state, not per attempt.
        """
        if why != self.lastFailure:
            self.log.warn(
                "{link}: {why}; retrying",
                link=self.name,
                why=why,
                event="link.connect_failed",
                target=self.target,
            )
        self.lastFailure = why

    def _readyChanged(self, value: bool) -> None:
        self.log.info(
            "{link}: {state}",
            link=self.name,
            state="ready" if value else "not ready",
            event="link.ready" if value else "link.not_ready",
            target=self.target,
        )

    def _healthy(self) -> None:
        """
        The peer answered: reconnect delays start again from the base.
        """
        self._failures = 0
        self.lastFailure = None

    # -- IChannelOwner --------------------------------------------------------

    def channelConnected(self, protocol: ISOChannelProtocol) -> None:
        self.protocol = protocol
        self.counters["connects"] += 1
        if self.settings.tcpKeepAlive and hasattr(protocol.transport, "setTcpKeepAlive"):
            protocol.transport.setTcpKeepAlive(True)
        self.log.info(
            "{link}: connected to {peer}{tls}",
            link=self.name,
            peer=protocol.peer,
            tls="; TLS handshake" if self.tlsOptions is not None else "",
            event="link.connected",
            target=self.target,
        )
        if self.tlsOptions is not None:
            self._handshakeTimer = self.clock.callLater(
                self.settings.handshakeTimeout, self._handshakeTimedOut, protocol
            )
            return  # usable once secured
        self._usable()

    def channelSecured(self, protocol: ISOChannelProtocol) -> None:
        if protocol is not self.protocol:
            return
        self._handshakeTimer = cancelTimer(self._handshakeTimer)
        self.log.info(
            "{link}: TLS handshake with {peer} done",
            link=self.name,
            peer=protocol.peer,
            event="link.secured",
        )
        self._usable()

    def _handshakeTimedOut(self, protocol: ISOChannelProtocol) -> None:
        self._handshakeTimer = None
        if protocol is self.protocol and not protocol.secured:
            # channelLost counts it, once, as any failed handshake, and says why
            self._handshakeFailure = (
                f"TLS handshake with {self.target} not done in {self.settings.handshakeTimeout:g}s"
            )
            protocol.transport.abortConnection()

    def _usable(self) -> None:
        """
        The connection can carry messages: sign on, or be ready.
        """
        if self.settings.signOn:
            self._networkRequest(SIGN_ON).addCallbacks(self._signedOn, self._signOnFailed)
        else:
            if not self.settings.echoInterval:
                self._healthy()  # nothing else will tell
            self.ready.set(True)
            if self._alive:
                self._echo()  # a pool waits for proof that this peer answers
        self._schedule()

    def channelMessage(self, protocol: ISOChannelProtocol, message: Dict[str, str]) -> None:
        if self._failures or self.lastFailure:
            self._healthy()  # the peer answers: a busy link needs no echo to prove it
        if self._network.take(message):
            return
        if message.get("t") == "0800" and message.get("70") == SIGN_OFF:
            self._peerSignedOff(protocol, message)
            return
        self._deliver(message)

    def _peerSignedOff(self, protocol: ISOChannelProtocol, message: Mapping[str, str]) -> None:
        """
        The peer is going (a server's planned stop, QServer C{sign-off-on-
        stop}): send nothing more on this connection, so nothing is left
        unread; answers to what was sent still come.  The answer tells the
        peer everything before it has been sent.
        """
        self.ready.set(False)
        self.log.info(
            "{link}: {peer} signed off; nothing more is sent on this connection",
            link=self.name,
            peer=protocol.peer,
        )
        answer = {k: message[k] for k in ("7", "11", "70") if k in message}
        answer.update(t="0810", **{"39": "00"})
        try:
            protocol.sendMessage(answer)
        except PackError:
            pass
        if self._signedOff is None:
            # A peer that signs off and then keeps the connection is left.
            self._signedOff = self.clock.callLater(self.signOffLinger, self._leave, protocol)

    def _leave(self, protocol: ISOChannelProtocol) -> None:
        self._signedOff = None
        if protocol is self.protocol:
            self.log.warn(
                "{link}: {peer} signed off {linger:g}s ago and kept the connection; closing it",
                link=self.name,
                peer=protocol.peer,
                linger=self.signOffLinger,
            )
            protocol.transport.loseConnection()

    def channelLost(self, protocol: ISOChannelProtocol, reason: Optional[Failure]) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        self.counters["disconnects"] += 1
        self.ready.set(False)
        self._handshakeTimer = cancelTimer(self._handshakeTimer)
        self._idleTimer = cancelTimer(self._idleTimer)
        self._signedOff = cancelTimer(self._signedOff)
        self._network.cancel()
        self.signedOn = False
        if (
            self.tlsOptions is not None
            and self.running
            and (not protocol.secured or isTLSFailure(reason))
        ):
            # The handshake failed (an unknown CA, another host name, no
            # client certificate; with TLS 1.3 the server refuses ours just
            # after our side is done): a failed connection, as a refusal is.
            self._failures += 1
            self.counters["connect_failures"] += 1
            self._noteFailure(
                self._handshakeFailure
                or f"TLS with {self.target} failed: {describeTLSFailure(reason)}"
            )
        self._handshakeFailure = None
        self.log.info(
            "{link}: disconnected from {peer}: {reason}",
            link=self.name,
            peer=protocol.peer,
            reason=_reason(reason),
            event="link.disconnected",
            target=self.target,
        )
        self._lost(reason)

    def channelUndecodable(self, protocol: ISOChannelProtocol, why: str) -> None:
        """
        The issuer sent what does not decode: the stream may be out of step
        (a length prefix that framed a blob), so every answer after it
        would be lost on a link that looks ready.  Drop it and reconnect.
        """
        if protocol is self.protocol and not protocol.discarding:
            protocol.discardInput()  # nothing more from this stream, in this read or after
            self._drop(f"undecodable frame from the issuer ({why})", "bad_frames")

    def reconnect(self, why: str) -> None:
        """
        The stream is out of step (its MUX says answers stopped matching):
        drop the connection, counted as C{resyncs}, and connect again.
        """
        protocol = self.protocol
        if protocol is not None and not protocol.discarding:
            protocol.discardInput()
            self._drop(f"stream out of step: {why}", "resyncs")

    def channelIdle(self, protocol: ISOChannelProtocol) -> bool:
        return True  # the adaptor keeps its own read timeout (idleTimeout)

    # -- sign-on, echo and probes --------------------------------------------

    def probe(self) -> Deferred:
        """
        Fires the next time the peer proves it answers: an echo answered or
        a sign-on accepted.  An echo is sent now if the link is up and none
        is outstanding; if it is down, one is sent as soon as it connects.
        """
        d = self._alive.wait()
        if self.protocol is not None and self.ready and not self._network:
            self._echo()
        return d

    def _proven(self) -> None:
        self._healthy()
        self._alive.fire()

    def _networkRequest(self, code: str) -> Deferred:
        """
        Send an 0800 with 70=C{code}; fires with its answer, or fails with
        a TimeoutError after C{echoTimeout} (or a PackError).  Either way the
        idle timer is armed again afterwards.
        """
        assert self.protocol is not None  # sent only on a connection
        return self._network.send(self.protocol.sendMessage, code, self.settings.echoTimeout)

    def _echo(self) -> None:
        self._networkRequest(ECHO).addCallbacks(self._echoed, self._echoFailed)

    def _echoed(self, response: Mapping[str, str]) -> None:
        self.lastEcho = self.clock.seconds()
        self._proven()
        self._schedule()

    def _signedOn(self, response: Mapping[str, str]) -> None:
        if response.get("39") == "00":
            self.signedOn = True
            self.ready.set(True)
            self.log.info("{link}: signed on", link=self.name, event="link.signed_on")
            self._proven()
            self._schedule()
        else:
            self._drop(
                "sign-on refused with 39={rc}".format(rc=response.get("39")), "sign_on_failures"
            )

    def _signOnFailed(self, failure: Failure) -> None:
        self._checkFailed(failure, "sign-on", "sign-on not answered", "sign_on_failures")

    def _echoFailed(self, failure: Failure) -> None:
        self._checkFailed(failure, "echo", "echo not answered: peer is dead", "echo_failures")

    def _checkFailed(self, failure: Failure, what: str, unanswered: str, counter: str) -> None:
        """
        An echo or sign-on failed: unanswered, or it could not be sent;
        either way the link is dropped.  (Cancelled: the connection went
        first, and said so.)
        """
        if failure.check(CancelledError):
            return
        if failure.check(TimeoutError):
            self._drop(unanswered, counter)
        elif failure.check(PackError):
            self._drop(f"{what} cannot be sent: {failure.value}", counter)
        else:
            assert failure.value is not None  # a Failure holds its exception
            self._drop(f"{what} cannot be sent: {describeError(failure.value)}", counter)

    def _drop(self, why: str, counter: str) -> None:
        """
        The peer failed a check: drop the connection; the reconnect follows
        the backoff (this counts as a failure).
        """
        self.counters[counter] += 1
        self._failures += 1
        self.lastFailure = why
        protocol = self.protocol
        self.ready.set(False)
        self.log.warn(
            "{link}: {why}; reconnecting",
            link=self.name,
            why=why,
            event=f"link.{counter[:-1]}",
            target=self.target,
        )
        if protocol is not None:
            protocol.transport.abortConnection()

    # -- idle checks ------------------------------------------------------------

    def _due(self, protocol: ISOChannelProtocol) -> List[float]:
        """
        When each idle check next falls due: the echo (nothing received),
        the keep-alive (nothing sent) and the read timeout (nothing
        received).
        """
        due = []
        settings = self.settings
        if settings.echoInterval and not self._network:
            due.append(protocol.lastReceived + settings.echoInterval)
        if settings.keepAlive:
            due.append(protocol.lastSent + settings.keepAliveEvery)
        if settings.idleTimeout:
            due.append(protocol.lastReceived + settings.idleTimeout)
        return due

    def _schedule(self) -> None:
        self._idleTimer = cancelTimer(self._idleTimer)
        protocol = self.protocol
        if protocol is None:
            return
        due = self._due(protocol)
        if due:
            delay = max(0.0, min(due) - self.clock.seconds())
            self._idleTimer = self.clock.callLater(delay, self._idleCheck)

    def _idleCheck(self) -> None:
        self._idleTimer = None
        protocol = self.protocol
        if protocol is None:
            return
        now = self.clock.seconds()
        settings = self.settings
        if settings.idleTimeout and now - protocol.lastReceived >= settings.idleTimeout:
            self._drop(f"nothing received for {settings.idleTimeout}s", "idle_timeouts")
            return
        if (
            settings.echoInterval
            and not self._network
            and now - protocol.lastReceived >= settings.echoInterval
        ):
            self._echo()
        if settings.keepAlive and now - protocol.lastSent >= settings.keepAliveEvery:
            protocol.sendKeepAlive()
        if self.protocol is not None:
            self._schedule()


def _reason(failure: object) -> str:
    """
    A connection failure in a few words: refused, timed out, a TLS error.
    """
    if failure is None:
        return "connection closed"
    value = getattr(failure, "value", failure)
    if isinstance(value, ConnectionDone):
        return "closed cleanly"
    if isinstance(value, TimeoutError):
        return "timed out"
    text = getattr(failure, "getErrorMessage", lambda: str(value))()
    return f"{type(value).__name__}: {text}" if text else type(value).__name__
