"""
What every link has in common: receivers, loss observers, a ready state, and
sending on the current connection.  L{ChannelAdaptor} (outbound) and
L{ServerSession} (one inbound connection) build on it.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool._support import Observers, RateLimiter, Readiness, describeCode, describeError
from muxpool.channel import ChannelSpec, ISOChannelProtocol
from muxpool.errors import EncodeFailed, LinkNotReady
from muxpool.interfaces import ILink, ISource
from muxpool.iso import PackError, binaryFieldsOf, maskMessage


@implementer(ILink, ISource)
class LinkBase:
    """
    Fan-out of received messages and losses, and sending on the current
    protocol.  Subclasses set C{self.protocol}.
    """

    log = Logger()

    def __init__(
        self,
        name: str,
        spec: Optional[ChannelSpec],
        clock: Optional[IReactorTime] = None,
        limiter: Optional[RateLimiter] = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.ready = Readiness(False, f"{name} ready state")
        self.protocol: Optional[ISOChannelProtocol] = None
        # A tuple, replaced on change: delivery walks it without a copy, and
        # a receiver may add or remove receivers meanwhile.
        self._receivers: Tuple[Callable, ...] = ()
        self._lossObservers = Observers(f"{name} loss")
        # (shared by a server's sessions: see ISOChannelProtocol)
        self._limiter = limiter if limiter is not None else RateLimiter(clock=clock)

    def addReceiver(self, receiver: Callable) -> None:
        # Newest first: after a redeploy the new MUX sees messages first.
        self._receivers = (receiver,) + self._receivers

    def removeReceiver(self, receiver: Callable) -> None:
        if receiver in self._receivers:
            kept = list(self._receivers)
            kept.remove(receiver)
            self._receivers = tuple(kept)

    def addLossObserver(self, observer: Callable) -> None:
        self._lossObservers.add(observer)

    def removeLossObserver(self, observer: Callable) -> None:
        self._lossObservers.remove(observer)

    def isConnected(self) -> bool:
        return self.protocol is not None and bool(self.protocol.connected)

    def send(self, message: Mapping[str, str]) -> None:
        """
        Pack and write C{message} on the current connection.

        @raise LinkNotReady: no connection.
        @raise EncodeFailed: the message cannot be packed (nothing written).
        """
        protocol = self.protocol
        if protocol is None or not protocol.connected:
            raise LinkNotReady(f"{self.name}: not connected")
        try:
            protocol.sendMessage(message)
        except PackError as e:
            self._limiter.emit(
                self.log.warn,
                ("pack", e.field),
                "{link}: cannot send {message}: {error}",
                link=self.name,
                message=maskMessage(message, binaryFieldsOf(self)),
                error=str(e),
            )
            raise EncodeFailed(f"{self.name}: {e}") from None

    def _deliver(self, message: Mapping[str, str]) -> bool:
        """
        Offer C{message} to the receivers, newest first, until one takes it.
        A receiver that raises is logged and the next one is offered it.

        @return: whether one took it.
        """
        receivers = self._receivers
        if not receivers:
            self._limiter.emit(
                self.log.info,
                "no receiver",
                "{link}: no receiver for {message}",
                link=self.name,
                message=maskMessage(message, binaryFieldsOf(self)),
            )
            return False
        last = len(receivers) - 1
        for i, receiver in enumerate(receivers):
            try:
                if receiver(message, i == last):
                    return True
            except Exception as e:
                self._receiverFailed(receiver, message, e)
        return False

    def _receiverFailed(
        self, receiver: Callable, message: Mapping[str, str], error: Exception
    ) -> None:
        """
        C{receiver} raised C{error} on C{message}: logged (by type and
        place, the message masked), and the next receiver is offered it.
        """
        self.log.error(
            "{link}: receiver {receiver} failed on {message}: {error}",
            link=self.name,
            receiver=describeCode(receiver),
            error=describeError(error),
            message=maskMessage(message, binaryFieldsOf(self)),
        )

    def _lost(self, reason: Optional[Failure]) -> None:
        self._lossObservers.notify(reason)
