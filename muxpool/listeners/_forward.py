"""
L{Forward}: the request listener that sends each request through a MUX,
found by name, and answers with the response or a decline.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping, Optional, Union, cast

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool._config import milliseconds, parseFieldList
from muxpool._support import RateLimiter, describeError, notAMessage
from muxpool.errors import NotSent, OutcomeUnknown
from muxpool.interfaces import IMUX, IDirectMUX, IOutcome, IRequestListener, ISource
from muxpool.iso import binaryFieldsOf, isRequest, maskMessage
from muxpool.listeners._decline import DECLINE_FIELDS, decline, sendAnswer
from muxpool.registry import defaultRegistry

log = Logger()


@implementer(IRequestListener)
class Forward:
    """
    Sends each request through a MUX (found by name when the request
    arrives, so pools and hot redeploys work) and answers the source with
    the response.  It takes the message it handles as its own (it goes on,
    without the acquirer channel's header and bitmaps, as the request: no
    copy per request).

    It forwards requests only: a response, or a message whose MTI is not
    four digits, it leaves to the next listener (returns False), as an
    acquirer's stray 0210 must not reach an issuer as a request, nor wait
    there for an answer that never comes.  (jPOS's QServer hands every
    message to its listeners; what a listener takes is its own choice.)

    Not sent -> answers 39=91 (issuer unavailable).  Outcome unknown ->
    answers 39=C{unknownCode} (default 68) and logs it for reversal.  These
    declines carry only C{declineFields} (see L{decline}): never card data.

    Properties (jPOS style): C{mux}, C{timeout} (ms), C{not-sent-code},
    C{unknown-code}, C{decline-fields} (ids, default L{DECLINE_FIELDS}).  Errors that repeat for every request while a fault
    lasts (no such MUX, not sent) are logged at a bounded rate; an outcome
    unknown, which may need a reversal, is logged every time.
    """

    #: The properties a descriptor may give (others are warned about).
    properties = frozenset({"mux", "timeout", "not-sent-code", "unknown-code", "decline-fields"})

    def __init__(
        self,
        mux: Union[str, IMUX],
        timeout: float = 30.0,
        resolve: Optional[Callable[[str], IMUX]] = None,
        notSentCode: str = "91",
        unknownCode: str = "68",
        declineFields: Iterable[str] = DECLINE_FIELDS,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        self._mux = mux
        self.declineFields = tuple(declineFields)
        self.timeout = timeout
        self._resolve = resolve
        self.notSentCode = notSentCode
        self.unknownCode = unknownCode
        self._limiter = RateLimiter(clock=clock)

    @property
    def muxName(self) -> str:
        """
        The name of the MUX requests go to.
        """
        return self._mux if isinstance(self._mux, str) else self._mux.name

    @classmethod
    def fromProperties(
        cls,
        properties: Mapping[str, str],
        resolve: Optional[Callable[[str], IMUX]] = None,
        clock: Optional[IReactorTime] = None,
    ) -> "Forward":
        return cls(
            properties["mux"],
            milliseconds(properties.get("timeout"), 30.0),
            resolve,
            properties.get("not-sent-code", "91"),
            properties.get("unknown-code", "68"),
            parseFieldList(properties["decline-fields"])
            if "decline-fields" in properties
            else DECLINE_FIELDS,
            clock,
        )

    @property
    def mux(self) -> IMUX:
        if isinstance(self._mux, str):
            if self._resolve is None:
                self._resolve = defaultRegistry.getMUX
            return self._resolve(self._mux)
        return self._mux

    def process(self, source: ISource, message: Dict[str, str]) -> bool:
        if not isRequest(message.get("t", "")):
            return False
        try:
            mux = self.mux
        except KeyError as e:
            self._limiter.emit(log.warn, "no mux", "Forward: no such MUX: {error}", error=str(e))
            self._reject(source, message, None, self.notSentCode)
            return True
        # The message is ours now (we handle it): it goes on as the request,
        # without the header and bitmaps of the acquirer's channel (no copy:
        # memory per request in flight counts).
        header = message.pop("h", None)
        message.pop("p", None)
        message.pop("1", None)
        answer = _Answer(self, source, message, header)
        if IDirectMUX.providedBy(mux):
            # No Deferred per request: the MUX gives the outcome to answer.
            try:
                mux.requestTo(answer, message, self.timeout)
            except Exception as e:
                if answer.given:  # it failed after the outcome: one answer only
                    log.error(
                        "Forward: MUX {mux} failed after it answered: {error}",
                        mux=self.muxName,
                        error=describeError(e),  # never its text: it may hold card data
                    )
                else:
                    answer.errback(Failure())
        else:
            maybeDeferred(mux.request, message, self.timeout).addCallbacks(
                answer.callback, answer.errback
            )
        return True

    def _answered(
        self,
        response: Dict[str, str],
        source: ISource,
        request: Mapping[str, str],
        header: Optional[str],
    ) -> None:
        wrong = notAMessage(response)  # a MUX in user code may answer anything
        if wrong is not None:
            self._failed(wrong, source, request, header)
            return
        # The response is ours alone too: made the answer in place.
        response.pop("p", None)
        response.pop("1", None)
        response.pop("h", None)
        if header is not None:
            response["h"] = header
        sendAnswer(source, response, "Forward")

    def _failed(
        self, failure: Failure, source: ISource, request: Mapping[str, str], header: Optional[str]
    ) -> None:
        if failure.check(OutcomeUnknown):
            log.warn(
                "Forward: outcome unknown, reversal needed for {message}: {error}",
                message=maskMessage(request, binaryFieldsOf(source)),
                error=str(failure.value),
            )
            self._reject(source, request, header, self.unknownCode)
        elif failure.check(NotSent):
            self._limiter.emit(
                log.info,
                ("not sent", type(failure.value)),
                "Forward: not sent: {error}",
                error=str(failure.value),
            )
            self._reject(source, request, header, self.notSentCode)
        else:
            # Not one of the three outcomes: a bug in a MUX.  It may have
            # been written, so it is answered as an outcome unknown.
            assert failure.value is not None  # a Failure holds its exception
            log.error(
                "Forward: MUX {mux} failed with {error} (not an outcome) on {message}",
                mux=self.muxName,
                error=describeError(failure.value),
                message=maskMessage(request, binaryFieldsOf(source)),
            )
            self._reject(source, request, header, self.unknownCode)

    def _reject(
        self, source: ISource, request: Mapping[str, str], header: Optional[str], code: str
    ) -> None:
        answer = decline(request, code, self.declineFields, binaryFieldsOf(source))
        if header is not None and "h" in self.declineFields:
            answer["h"] = header
        sendAnswer(source, answer, "Forward")


@implementer(IOutcome)
class _Answer:
    """
    Where one forwarded request's outcome goes: the source it came from
    gets the response or a decline.
    """

    __slots__ = ("forward", "source", "request", "header", "given")

    def __init__(
        self, forward: Forward, source: ISource, request: Mapping[str, str], header: Optional[str]
    ) -> None:
        self.forward = forward
        self.source = source
        self.request = request
        self.header = header
        self.given = False

    def callback(self, response: Mapping[str, str]) -> None:
        if self.given:
            return  # one outcome per request: a MUX that breaks that is ignored
        self.given = True
        # a dict (Forward checks): the response is ours to make the answer of
        self.forward._answered(
            cast(Dict[str, str], response), self.source, self.request, self.header
        )

    def errback(self, error: Union[BaseException, Failure]) -> None:
        if self.given:
            return
        self.given = True
        failure = error if isinstance(error, Failure) else Failure(error)
        self.forward._failed(failure, self.source, self.request, self.header)
