"""
The interfaces between muxpool's layers, in one place.

Each layer knows the one below it only through one of these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure


class IPackager(Interface):
    """
    Turns a message dict into the bytes of one ISO 8583 message and back.
    """

    name = Attribute("A name for logs and errors.")
    binaryFields = Attribute(
        "Frozenset of field ids (str) whose values are binary; hidden in logs."
    )

    def pack(message: Mapping[str, str]) -> bytes:
        """
        Pack a message dict (not modified) into C{bytes}.

        @raise muxpool.iso.PackError: naming the field at fault.
        """

    def unpack(data: bytes) -> Dict[str, str]:
        """
        Unpack C{bytes} into a message dict.

        @raise muxpool.iso.UnpackError: naming the field and offset.
        """


class ISource(Interface):
    """
    Where an inbound request came from: something that can answer it.
    """

    def send(message: Mapping[str, str]) -> None:
        """
        Send C{message} back where the request came from.

        @raise muxpool.errors.NotSent: if it cannot be written.
        """

    def isConnected() -> bool:
        """
        Whether an answer can still be written.
        """


class ILink(Interface):
    """
    One connection's worth of transport that a MUX sends through: a
    ChannelAdaptor, or a session accepted by a QServer.
    """

    name = Attribute("The link's name (for logs, and for original-channel-field).")
    ready = Attribute(
        "A L{muxpool.Readiness}: true while a connection is up and signed on; can be waited on."
    )

    def send(message: Mapping[str, str]) -> None:
        """
        Pack and write C{message} now.

        @raise muxpool.errors.NotSent: if it was not written (link down,
            pack error): nothing reached a socket.
        """

    def addReceiver(receiver: Callable[[Dict[str, str], bool], bool]) -> None:
        """
        Offer every message that arrives to C{receiver(message, final)},
        newest receiver first, until one returns C{True}.  C{final} is true
        for the last receiver, which must take the message (as unhandled if
        nothing else); earlier ones take only what they can match.  Usually
        there is one receiver; two while a MUX is redeployed.
        """

    def removeReceiver(receiver: Callable[[Dict[str, str], bool], bool]) -> None:
        """
        Stop calling C{receiver}.
        """

    def addLossObserver(observer: Callable[[Failure], object]) -> None:
        """
        Call C{observer(reason)} each time the connection is lost, so requests
        written on it can be failed at once.
        """

    def removeLossObserver(observer: Callable[[Failure], object]) -> None:
        """
        Stop calling C{observer}.
        """


class IProbe(Interface):
    """
    A link that can prove its peer answers (a ChannelAdaptor: an echo).
    """

    def probe() -> Deferred:
        """
        A Deferred that fires the next time the peer proves it answers (an
        echo answered, a sign-on accepted), asking for such proof now if it
        can.  Cancelling it stops the wait.
        """


class IReconnect(Interface):
    """
    A link that can give up its connection and make a new one (a
    ChannelAdaptor), for when its stream is out of step.
    """

    def reconnect(why: str) -> None:
        """
        Drop the current connection because of C{why} (logged, counted as
        a failure of the peer) and connect again after the backoff; nothing
        if not connected.
        """


class IMUX(Interface):
    """
    Request/response over one or more links (a QMUX, or a MUXPool).
    """

    name = Attribute("The MUX's name.")
    ready = Attribute("A L{muxpool.Readiness}: true while usable.")

    def request(message: Mapping[str, str], timeout: float) -> Deferred:
        """
        Send C{message} and wait up to C{timeout} seconds for its response.

        @return: a Deferred firing with the response dict, or failing with
            L{muxpool.errors.NotSent} (safe to retry) or
            L{muxpool.errors.OutcomeUnknown} (the issuer may have acted).
        """

    def send(message: Mapping[str, str]) -> None:
        """
        Send C{message} without waiting for an answer.

        @raise muxpool.errors.NotSent: if it could not be written.
        """

    def isConnected() -> bool:
        """
        Whether a request sent now could reach a link.
        """

    def pendingCount() -> int:
        """
        How many requests are in flight (sent, not yet answered or expired).
        """


class IOutcome(Interface):
    """
    Where one request's outcome goes without a Deferred per layer (see
    L{IDirectMUX}): exactly one of its methods is called, once.  A
    Deferred is one.
    """

    def callback(response: Mapping[str, str]) -> object:
        """
        The request was answered with C{response}.
        """

    def errback(error: Any) -> object:
        """
        The request ended with C{error}: a L{muxpool.errors.NotSent} or a
        L{muxpool.errors.OutcomeUnknown}, as an exception or a Failure.
        """


class IDirectMUX(IMUX):
    """
    A MUX that gives a request's outcome straight to an L{IOutcome}: no
    Deferred, callbacks or timer of its own between the layers of a
    switch.  L{muxpool.listeners.Forward} and L{muxpool.mux.MUXPool} use it
    when a MUX provides it (muxpool's QMUX and MUXPool do): it is what a
    pending request costs in memory, and a transaction in CPU.
    """

    def requestTo(outcome: IOutcome, message: Mapping[str, str], timeout: float) -> Any:
        """
        As L{IMUX.request}, the outcome going to C{outcome}, by C{timeout}
        seconds from now.  (A MUXPool watches a member's requests with a
        timer of its own, as it does a plain MUX's, unless the member's
        class says C{endsRequestsByDeadline = True}, as muxpool's QMUX and
        MUXPool do.)

        @return: an object whose C{cancel()} ends the request as cancelling
            L{IMUX.request}'s Deferred would; None if C{outcome} was given
            already (a refusal, or an answer while it was being sent).
        """


class IRequestListener(Interface):
    """
    Handles inbound requests (messages that are not responses to our own
    requests), as jPOS's ISORequestListener.
    """

    def process(source: ISource, message: Dict[str, str]) -> bool:
        """
        Handle C{message}, answering through C{source} (an L{ISource}) if it
        wants.  A listener that handles it may keep and change C{message}:
        it was decoded for this chain alone.

        @return: C{True} if handled (stops the chain), C{False} otherwise.
        """


class IStrategy(Interface):
    """
    Chooses the member of a MUXPool a request goes to.

    Built-in strategies are classes built once per pool with the pool's
    configuration dict; a strategy found by dotted path is built the same
    way; one found through Twisted's plugin system (an object providing
    this interface and C{twisted.plugin.IPlugin}, in a C{twisted/plugins/}
    module) is used as it is.
    """

    name = Attribute("The strategy's configuration name, e.g. 'round-robin'.")

    def select(pool: IPool, message: Mapping[str, str]) -> Optional[IMUX]:
        """
        Pick a member for C{message}.

        @param pool: an L{IPool} (ordered members and usability).
        @return: a usable member (an L{IMUX}) or C{None}.
        """


class IPool(Interface):
    """
    What a strategy sees of a MUXPool.
    """

    members = Attribute("The ordered list of member MUXes (a tuple).")

    def isUsable(member: IMUX) -> bool:
        """
        Whether C{member} is connected and enabled (and, while a request is
        being retried, not already tried for it).
        """

    def memberNamed(name: str) -> Optional[IMUX]:
        """
        The member whose own name, or whose link's name, is C{name}, or None.
        """


class ISocketSource(Interface):
    """
    Where a server's listening port comes from, when not from its endpoint
    alone (a worker process: see L{muxpool.app}).
    """

    def listen(description: Optional[str], endpoint: Any, factory: Any) -> Any:
        """
        A Deferred firing with a listening port for C{factory}: the server's
        endpoint string C{description}, its endpoint object C{endpoint}.
        """
