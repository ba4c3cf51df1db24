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
import time
from typing import Dict, Mapping, Optional, Union

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.interfaces import IChannelOwner
from muxpool.link import LinkBase
from muxpool.packagers import PackError

SIGN_ON = "001"
ECHO = "301"


@implementer(IStreamClientEndpoint)
class _TimeoutEndpoint:
    """
    Gives up a connection attempt after C{timeout} seconds.
    """

    def __init__(self, endpoint, timeout: float, clock) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._clock = clock

    def connect(self, factory):
        return self._endpoint.connect(factory).addTimeout(self._timeout, self._clock)


def clientEndpoint(
    reactor,
    endpoint: Union[str, IStreamClientEndpoint, None] = None,
    host: Optional[str] = None,
    port: Optional[int] = None,
    connectTimeout: Optional[float] = None,
) -> IStreamClientEndpoint:
    """
    The endpoint to connect to: a Twisted client endpoint string (C{tcp:},
    C{tls:}, C{unix:}) or object, else C{host}/C{port}.
    """
    if isinstance(endpoint, str):
        ep = clientFromString(reactor, endpoint)
    elif endpoint is not None:
        ep = endpoint
    elif host and port:
        ep = HostnameEndpoint(reactor, host, int(port))
    else:
        raise ValueError("a channel needs an endpoint, or host and port")
    if connectTimeout:
        ep = _TimeoutEndpoint(ep, connectTimeout, reactor)
    return ep


class _ChannelFactory(Factory):
    noisy = False

    def __init__(self, adaptor: "ChannelAdaptor") -> None:
        self.adaptor = adaptor

    def buildProtocol(self, addr):
        return ISOChannelProtocol(self.adaptor.spec, self.adaptor, self.adaptor.clock)


@implementer(IChannelOwner)
class ChannelAdaptor(LinkBase, Service):
    """
    Keeps one outbound channel connected; an L{ILink} for a QMUX.

    All times are in seconds.

    @param reconnectDelay: base of the reconnect backoff (jPOS
        C{reconnect-delay}); the delay grows by half each failed attempt up to
        C{maxReconnectDelay} (default four times the base), with up to 20%
        jitter so a fleet of adaptors does not reconnect in step.
    @param idleTimeout: jPOS channel C{timeout}: with nothing received for
        this long, send a keep-alive frame if C{keepAlive}, else reconnect.
    @param keepAlive: send jPOS zero-length keep-alive frames when idle.
    @param tcpKeepAlive: set SO_KEEPALIVE on each connection.
    @param signOn: after connecting, send 0800 (70=001); the link is ready
        only once it is answered 39=00.
    @param echoInterval: send 0800 (70=301) after this long with nothing
        received; an echo unanswered within C{echoTimeout} drops the link.
    """

    def __init__(
        self,
        name: str,
        spec: ChannelSpec,
        endpoint: Union[str, IStreamClientEndpoint, None] = None,
        reactor=None,
        *,
        host: Optional[str] = None,
        port: Optional[int] = None,
        connectTimeout: Optional[float] = None,
        reconnectDelay: float = 10.0,
        maxReconnectDelay: Optional[float] = None,
        idleTimeout: Optional[float] = None,
        keepAlive: bool = False,
        tcpKeepAlive: bool = False,
        signOn: bool = False,
        echoInterval: Optional[float] = None,
        echoTimeout: float = 10.0,
        jitter=random.random,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        LinkBase.__init__(self, name, spec)
        self.setName(name)
        self.clock = reactor
        self.endpoint = clientEndpoint(reactor, endpoint, host, port, connectTimeout)
        self.idleTimeout = idleTimeout
        self.keepAlive = keepAlive
        self.tcpKeepAlive = tcpKeepAlive
        self.signOn = signOn
        self.echoInterval = echoInterval
        self.echoTimeout = echoTimeout
        self.counters = {"connects": 0, "disconnects": 0, "echo_failures": 0,
                         "sign_on_failures": 0, "idle_timeouts": 0}
        self._stan = 0
        self._network: Dict[str, Deferred] = {}
        self._timer = None
        cap = maxReconnectDelay if maxReconnectDelay is not None else 4 * reconnectDelay
        self._client = ClientService(
            self.endpoint,
            _ChannelFactory(self),
            retryPolicy=backoffPolicy(
                initialDelay=reconnectDelay,
                maxDelay=cap,
                factor=1.5,
                jitter=lambda: jitter() * reconnectDelay * 0.2,
            ),
            clock=reactor,
        )

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
        return self._client.stopService()

    # -- IChannelOwner --------------------------------------------------------

    def channelConnected(self, protocol: ISOChannelProtocol) -> None:
        self.protocol = protocol
        self.counters["connects"] += 1
        if self.tcpKeepAlive and hasattr(protocol.transport, "setTcpKeepAlive"):
            protocol.transport.setTcpKeepAlive(True)
        self.log.info("{link}: connected to {peer}", link=self.name, peer=protocol.peer)
        if self.signOn:
            self._networkRequest(SIGN_ON).addCallbacks(self._signedOn, self._signOnFailed)
        else:
            self.ready.set(True)
        self._schedule()

    def channelMessage(self, protocol: ISOChannelProtocol, message: Mapping[str, str]) -> None:
        if message.get("t") == "0810":
            waiting = self._network.pop(message.get("11", "").strip(), None)
            if waiting is not None:
                waiting.callback(message)
                return
        self._deliver(message)

    def channelLost(self, protocol: ISOChannelProtocol, reason) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        self.counters["disconnects"] += 1
        self.ready.set(False)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        network, self._network = self._network, {}
        for d in network.values():
            d.cancel()
        self.log.info("{link}: disconnected", link=self.name)
        self._lost(reason)

    # -- sign-on and echo --------------------------------------------------

    def _nextStan(self) -> str:
        self._stan = self._stan % 999999 + 1
        return "%06d" % self._stan

    def _networkRequest(self, code: str) -> Deferred:
        stan = self._nextStan()
        message = {
            "t": "0800",
            "7": time.strftime("%m%d%H%M%S", time.gmtime(self.clock.seconds())),
            "11": stan,
            "70": code,
        }
        d = Deferred(lambda _: self._network.pop(stan, None))
        self._network[stan] = d
        try:
            self.protocol.sendMessage(message)
        except PackError as e:
            del self._network[stan]
            d.errback(e)
            return d
        d.addTimeout(self.echoTimeout, self.clock)
        return d

    def _signedOn(self, response) -> None:
        if response.get("39") == "00":
            self.ready.set(True)
            self.log.info("{link}: signed on", link=self.name)
        else:
            self._drop("sign-on refused with 39={rc}".format(rc=response.get("39")), "sign_on_failures")

    def _signOnFailed(self, failure) -> None:
        if failure.check(TimeoutError):
            self._drop("sign-on not answered", "sign_on_failures")
        elif failure.check(PackError):
            self._drop(f"sign-on cannot be sent: {failure.value}", "sign_on_failures")

    def _echoFailed(self, failure) -> None:
        if failure.check(TimeoutError):
            self._drop("echo not answered: peer is dead", "echo_failures")
        elif failure.check(PackError):
            self._drop(f"echo cannot be sent: {failure.value}", "echo_failures")

    def _drop(self, why: str, counter: str) -> None:
        self.counters[counter] += 1
        protocol = self.protocol
        self.ready.set(False)
        self.log.warn("{link}: {why}; reconnecting", link=self.name, why=why)
        if protocol is not None:
            protocol.transport.abortConnection()

    def _schedule(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        protocol = self.protocol
        if protocol is None:
            return
        due = []
        if self.echoInterval and not self._network:
            due.append(protocol.lastReceived + self.echoInterval)
        if self.idleTimeout:
            base = protocol.lastSent if self.keepAlive else protocol.lastReceived
            due.append(base + self.idleTimeout)
        if not due:
            return
        delay = max(0.0, min(due) - self.clock.seconds())
        self._timer = self.clock.callLater(delay, self._idleCheck)

    def _idleCheck(self) -> None:
        self._timer = None
        protocol = self.protocol
        if protocol is None:
            return
        now = self.clock.seconds()
        if self.echoInterval and now - protocol.lastReceived >= self.echoInterval and not self._network:
            self._networkRequest(ECHO).addCallbacks(lambda _: self._schedule(), self._echoFailed)
        if self.idleTimeout:
            if self.keepAlive:
                if now - protocol.lastSent >= self.idleTimeout:
                    protocol.sendKeepAlive()
            elif now - protocol.lastReceived >= self.idleTimeout:
                self._drop(f"nothing received for {self.idleTimeout}s", "idle_timeouts")
                return
        if self.protocol is not None:
            self._schedule()
