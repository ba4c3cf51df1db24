"""
Request listeners: what handles inbound requests.

L{offer} runs a chain of listeners the way jPOS does (the first that handles
a message stops the chain).  L{Forward} sends each request through a named
MUX and answers with the response; L{Responder} is a small issuer simulator
for demos and tests.
"""

from __future__ import annotations

import json
from typing import IO, Callable, Collection, Dict, Iterable, Mapping, Optional, Sequence, Union

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from muxpool.boundary import describeError, notAMessage, where
from muxpool.errors import AnswerUndelivered, NotSent, OutcomeUnknown
from muxpool.interfaces import IMUX, IRequestListener, ISource
from muxpool.masking import HIDDEN, binaryFieldsOf, describeForReversal, maskMessage
from muxpool.messages import parseFieldList, responseMTI
from muxpool.observers import NO_KEYWORDS
from muxpool.ratelimit import RateLimiter

log = Logger()


class ListenerFailed(Exception):
    """
    A request listener raised.  Names the listener's class and file and the
    error's type and place, never the error's text or the message.
    """


def offer(listeners: Iterable[IRequestListener], source: ISource,
          message: Dict[str, str]) -> bool:
    """
    Give C{message} to each listener in turn until one handles it.

    @return: whether a listener handled it.
    @raise ListenerFailed: a listener raised; the chain stops there, and the
        caller decides the request's outcome.
    """
    for listener in listeners:
        try:
            if listener.process(source, message):
                return True
        except Exception as e:
            raise ListenerFailed(
                f"request listener {where(listener)} failed: {describeError(e)}") from None
    return False


#: Fields a decline made here copies from the request (besides the MTI, made
#: a response, and 39): the key, amounts, dates and routing fields an
#: acquirer matches an answer by.  Never card data: see L{decline}.
DECLINE_FIELDS = ("h", "3", "4", "7", "11", "12", "13", "24", "32", "33", "37", "41", "42",
                  "49", "100")


def decline(request: Mapping[str, str], code: str, fields: Iterable[str] = DECLINE_FIELDS,
            binaryFields: Collection[str] = ()) -> dict:
    """
    The answer to C{request} that a switch gives on its own (a request it
    could not forward, a listener that failed): the response MTI, 39 =
    C{code} and the listed C{fields} the request has.  Fields the masking
    rules hide (tracks, PIN block, ICC data, every binary field) are never
    copied, whatever C{fields} says.
    """
    answer = {k: request[k] for k in fields
              if k in request and k not in HIDDEN and k not in binaryFields}
    answer["t"] = responseMTI(request["t"])
    answer["39"] = code
    return answer


def _seconds(ms: Union[str, float]) -> float:
    return float(ms) / 1000.0


def _answer(source: ISource, response: Mapping[str, str], where: str) -> bool:
    """
    Send C{response}; if it cannot be, say so with what to reverse it by
    (never silently).

    @return: whether it was written.
    """
    try:
        source.send(response)
    except AnswerUndelivered:
        return False  # the session logged and counted it
    except NotSent as e:
        log.warn("{where}: could not answer ({error}): {answer}; reverse it if it was approved",
                 where=where, error=str(e), answer=describeForReversal(response))
        return False
    return True


@implementer(IRequestListener)
class Forward:
    """
    Sends each request through a MUX (found by name when the request
    arrives, so pools and hot redeploys work) and answers the source with
    the response.  It takes the message it handles as its own (it goes on,
    without the acquirer channel's header and bitmaps, as the request: no
    copy per request).

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
    def fromProperties(cls, properties: Mapping[str, str],
                       resolve: Optional[Callable[[str], IMUX]] = None,
                       clock: Optional[IReactorTime] = None) -> "Forward":
        return cls(
            properties["mux"],
            _seconds(properties.get("timeout", 30000)),
            resolve,
            properties.get("not-sent-code", "91"),
            properties.get("unknown-code", "68"),
            parseFieldList(properties["decline-fields"]) if "decline-fields" in properties
            else DECLINE_FIELDS,
            clock,
        )

    @property
    def mux(self) -> IMUX:
        if isinstance(self._mux, str):
            if self._resolve is None:
                from muxpool.registry import defaultRegistry

                self._resolve = defaultRegistry.getMUX
            return self._resolve(self._mux)
        return self._mux

    def process(self, source: ISource, message: Dict[str, str]) -> bool:
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
        args = (source, message, header)
        maybeDeferred(mux.request, message, self.timeout).addCallbacks(
            self._answered, self._failed, args, NO_KEYWORDS, args, NO_KEYWORDS)
        return True

    def _answered(self, response: Dict[str, str], source: ISource, request: Mapping[str, str],
                  header: Optional[str]) -> None:
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
        _answer(source, response, "Forward")

    def _failed(self, failure: Failure, source: ISource, request: Mapping[str, str],
                header: Optional[str]) -> None:
        if failure.check(OutcomeUnknown):
            log.warn(
                "Forward: outcome unknown, reversal needed for {message}: {error}",
                message=maskMessage(request, binaryFieldsOf(source)),
                error=str(failure.value),
            )
            self._reject(source, request, header, self.unknownCode)
        elif failure.check(NotSent):
            self._limiter.emit(log.info, ("not sent", type(failure.value)),
                               "Forward: not sent: {error}", error=str(failure.value))
            self._reject(source, request, header, self.notSentCode)
        else:
            # Not one of the three outcomes: a bug in a MUX.  It may have
            # been written, so it is answered as an outcome unknown.
            assert failure.value is not None  # a Failure holds its exception
            log.error("Forward: MUX {mux} failed with {error} (not an outcome) on {message}",
                      mux=self.muxName, error=describeError(failure.value),
                      message=maskMessage(request, binaryFieldsOf(source)))
            self._reject(source, request, header, self.unknownCode)

    def _reject(self, source: ISource, request: Mapping[str, str], header: Optional[str],
                code: str) -> None:
        answer = decline(request, code, self.declineFields, binaryFieldsOf(source))
        if header is not None and "h" in self.declineFields:
            answer["h"] = header
        _answer(source, answer, "Forward")


#: Fields a Responder copies from the request: key, amounts, references.
ECHOED_FIELDS = ("2", "3", "4", "7", "11", "12", "13", "37", "41", "42", "49", "70")


@implementer(IRequestListener)
class Responder:
    """
    Answers every request: the response MTI, the request's key and amount
    fields, 39 from C{resultCode}, any C{fixed} fields, after C{delay}
    seconds.  Properties: C{result-code}, C{delay} (ms), C{fields} (extra
    ids to echo), C{field.N} for a fixed value of field N, and C{record}: a
    file to which each answer written is appended, one JSON line (11, 41,
    39), for tests that check nothing approved was lost.
    """

    properties = frozenset({"result-code", "delay", "fields", "record"})
    propertyPrefixes = ("field.",)

    def __init__(
        self,
        resultCode: str = "00",
        fixed: Optional[Mapping[str, str]] = None,
        delay: float = 0.0,
        echo: Sequence[str] = ECHOED_FIELDS,
        clock: Optional[IReactorTime] = None,
        record: Optional[str] = None,
    ) -> None:
        self.resultCode = resultCode
        self.fixed = dict(fixed or {})
        self.delay = delay
        self.echo = tuple(echo)
        self.clock = clock
        self.answered = 0
        self.record = record
        self._recordFile: Optional[IO[str]] = None

    @classmethod
    def fromProperties(cls, properties: Mapping[str, str],
                       clock: Optional[IReactorTime] = None) -> "Responder":
        fixed = {k[6:]: v for k, v in properties.items() if k.startswith("field.")}
        echo = ECHOED_FIELDS + parseFieldList(properties.get("fields", ""))
        return cls(
            properties.get("result-code", "00"),
            fixed,
            _seconds(properties.get("delay", 0)),
            echo,
            clock,
            properties.get("record"),
        )

    def response(self, message: Mapping[str, str]) -> Dict[str, str]:
        answer = {k: message[k] for k in self.echo if k in message}
        answer["t"] = responseMTI(message["t"])
        if "h" in message:
            answer["h"] = message["h"]
        answer["39"] = self.resultCode
        answer.update(self.fixed)
        return answer

    def process(self, source: ISource, message: Mapping[str, str]) -> bool:
        answer = self.response(message)
        if self.delay > 0:
            clock = self.clock
            if clock is None:
                from twisted.internet import reactor
                clock = reactor
            clock.callLater(self.delay, self._send, source, answer)
        else:
            self._send(source, answer)
        return True

    def _send(self, source: ISource, answer: Mapping[str, str]) -> None:
        self.answered += 1
        if _answer(source, answer, "Responder") and self.record:
            if self._recordFile is None:
                self._recordFile = open(self.record, "a", buffering=1)
            self._recordFile.write(json.dumps({k: answer.get(k, "") for k in ("11", "41", "39")}) + "\n")
