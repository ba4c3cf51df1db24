"""
L{MemoryLink}: an L{ILink} with no connection behind it, built on the
library's own L{LinkBase}.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool._support import Waiters
from muxpool.errors import LinkNotReady
from muxpool.interfaces import ILink, IProbe, ISource
from muxpool.iso import ECHO
from muxpool.link import LinkBase, NetworkExchange


@implementer(ILink, ISource, IProbe)
class MemoryLink(LinkBase):
    """
    An in-memory link: what a QMUX sends is recorded in L{sent}, and what a
    test (or a L{MemoryIssuer}) says arrives is offered to the QMUX with
    L{deliver}.  Also an L{ISource}, to hand to a request listener as the
    client it answers.

    It is a L{LinkBase} with a list for a socket, so it keeps the rules of
    a real link: receivers are offered a message newest first, nothing is
    sent while it is not ready, L{lose} fails what was written on it (a
    QMUX ends those requests L{LinkLost}), and L{probe} proves its peer
    answers with an echo, so a pool with C{suspendAfterTimeouts} can
    suspend and resume its member.  Unlike a real link it is strict, as a
    test wants: a receiver or loss observer that raises, or a peer that
    raises on what is written, raises out of L{deliver}, L{lose} or the
    write, and removing what was not attached is a C{ValueError}.

    @ivar sent: every message written, in order (copies), echoes included.
    @ivar refuse: an exception (usually a L{NotSent}, such as
        L{EncodeFailed}) that every L{send} raises instead of writing,
        until set back to C{None}.
    @ivar peer: called with each message written, after it is recorded:
        the other end of the link (a L{MemoryIssuer} sets it).
    @ivar connection: how many times the connection was lost: an answer
        meant for an earlier connection is not delivered on this one.
    """

    def __init__(self, name: str = "memory", ready: bool = True) -> None:
        LinkBase.__init__(self, name, None)
        self.ready.set(ready)
        self.sent: List[Dict[str, str]] = []
        self.refuse: Optional[Exception] = None
        self.peer: Optional[Callable[[Dict[str, str]], None]] = None
        self.connection = 0
        self._probes = Waiters()
        self._network = NetworkExchange(None)

    def __repr__(self) -> str:
        return f"<MemoryLink {self.name}>"

    # -- ILink, ISource --------------------------------------------------------

    def send(self, message: Mapping[str, str]) -> None:
        """
        Record C{message} as written and hand it to L{peer}.

        @raise LinkNotReady: the link is not ready.
        @raise Exception: L{refuse}, if set.
        """
        if not self.ready:
            raise LinkNotReady(f"{self.name}: not connected")
        if self.refuse is not None:
            raise self.refuse
        self._write(message)

    def isConnected(self) -> bool:
        return bool(self.ready)

    def removeReceiver(self, receiver: Callable) -> None:
        """
        @raise ValueError: C{receiver} is not attached (a test notices a
            service that lets go of what it never held, or twice).
        """
        if receiver not in self._receivers:
            raise ValueError(f"{self.name}: {receiver!r} is not attached")
        LinkBase.removeReceiver(self, receiver)

    def removeLossObserver(self, observer: Callable) -> None:
        """
        @raise ValueError: C{observer} is not attached.
        """
        if observer not in self._lossObservers:
            raise ValueError(f"{self.name}: {observer!r} is not attached")
        LinkBase.removeLossObserver(self, observer)

    def _receiverFailed(
        self, receiver: Callable, message: Mapping[str, str], error: Exception
    ) -> None:
        raise error

    # -- what the other end does -----------------------------------------------

    def deliver(self, message: Mapping[str, str]) -> bool:
        """
        C{message} arrived: offer it to the receivers, newest first, until
        one takes it (the last one always does).  The answer to an echo
        sent by L{probe} or L{echo} is taken by the link itself.

        @return: whether anything took it.
        """
        if self._network.take(message):
            return True
        return self._deliver(message)

    def lose(self, reason: Optional[Failure] = None) -> None:
        """
        The connection is lost: the link is not ready, and each loss
        observer is told (with C{reason}, by default a C{ConnectionLost}).
        """
        self.connection += 1
        self._network.cancel()
        self.ready.set(False)
        reason = reason or Failure(ConnectionLost(f"{self.name}: connection lost"))
        for observer in self._lossObservers:
            observer(reason)

    def connect(self) -> None:
        """
        A connection is up again: the link is ready, and if a probe waits,
        an echo goes out at once (as a ChannelAdaptor echoes on connecting).
        """
        self.ready.set(True)
        if len(self._probes):
            self.echo()

    # -- IProbe ------------------------------------------------------------------

    def probe(self) -> Deferred:
        """
        Fires when the peer answers an echo; one is sent now if the link is
        ready and none is outstanding, else on L{connect}.
        """
        d = self._probes.wait()
        if self.ready and not self._network:
            self.echo()
        return d

    def echo(self) -> None:
        """
        Send an echo (0800 70=301) now, as a ChannelAdaptor does on its echo
        interval; its answer fires the waiting probes.  Not sent while the
        link is not ready; never refused.
        """
        if not self.ready:
            return
        failed: List[Failure] = []
        answered = self._network.send(self._write, ECHO, None)
        answered.addCallbacks(lambda _: self._probes.fire(), failed.append)
        if failed and not failed[0].check(CancelledError):
            failed[0].raiseException()  # the peer raised on it

    def _write(self, message: Mapping[str, str]) -> None:
        written = dict(message)
        self.sent.append(written)
        if self.peer is not None:
            self.peer(dict(written))
