"""
Request listeners: what handles inbound requests.

L{offer} runs a chain of listeners the way jPOS does (the first that handles
a message stops the chain).  L{Forward} sends each request through a named
MUX and answers with the response; L{Responder} is a small issuer simulator
for demos and tests.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from zope.interface import implementer

from muxpool.errors import NotSent, OutcomeUnknown
from muxpool.interfaces import IMUX, IRequestListener, ISource
from muxpool.masking import binaryFieldsOf, maskMessage
from muxpool.messages import parseFieldList, responseMTI

log = Logger()


def offer(listeners: Iterable[IRequestListener], source: ISource, message, where: str) -> bool:
    """
    Give C{message} to each listener in turn until one handles it.  A
    listener that raises is logged (message masked) and ends the chain.

    @return: whether a listener handled it.
    """
    for listener in listeners:
        try:
            if listener.process(source, message):
                return True
        except Exception:
            log.failure(
                "{where}: request listener {listener!r} failed on {message}",
                where=where,
                listener=listener,
                message=maskMessage(message, binaryFieldsOf(source)),
            )
            return True
    return False


def _seconds(ms) -> float:
    return float(ms) / 1000.0


def _answer(source: ISource, response, where: str) -> None:
    try:
        source.send(response)
    except NotSent as e:
        log.warn("{where}: could not answer: {error}", where=where, error=str(e))


@implementer(IRequestListener)
class Forward:
    """
    Sends each request through a MUX (found by name when the request
    arrives, so pools and hot redeploys work) and answers the source with
    the response.

    Not sent -> answers 39=91 (issuer unavailable).  Outcome unknown ->
    answers 39=C{unknownCode} (default 68) and logs it for reversal.

    Properties (jPOS style): C{mux}, C{timeout} (ms), C{not-sent-code},
    C{unknown-code}.
    """

    def __init__(
        self,
        mux: Union[str, IMUX],
        timeout: float = 30.0,
        resolve: Optional[Callable[[str], IMUX]] = None,
        notSentCode: str = "91",
        unknownCode: str = "68",
    ) -> None:
        self._mux = mux
        self.timeout = timeout
        self._resolve = resolve
        self.notSentCode = notSentCode
        self.unknownCode = unknownCode

    @classmethod
    def fromProperties(cls, properties: Mapping[str, str], resolve=None) -> "Forward":
        return cls(
            properties["mux"],
            _seconds(properties.get("timeout", 30000)),
            resolve,
            properties.get("not-sent-code", "91"),
            properties.get("unknown-code", "68"),
        )

    @property
    def mux(self) -> IMUX:
        if isinstance(self._mux, str):
            if self._resolve is None:
                from muxpool.registry import defaultRegistry

                self._resolve = defaultRegistry.getMUX
            return self._resolve(self._mux)
        return self._mux

    def process(self, source: ISource, message) -> bool:
        request = {k: v for k, v in message.items() if k not in ("h", "p", "1")}
        try:
            mux = self.mux
        except KeyError as e:
            self._reject(source, message, self.notSentCode, f"no such MUX: {e}")
            return True
        d = maybeDeferred(mux.request, request, self.timeout)  # a raise is "not sent" too
        d.addCallbacks(
            lambda response: self._answered(source, message, response),
            lambda failure: self._failed(source, message, failure),
        )
        return True

    def _answered(self, source, request, response) -> None:
        answer = dict(response)
        answer.pop("p", None)
        answer.pop("1", None)
        answer.pop("h", None)
        if "h" in request:
            answer["h"] = request["h"]
        _answer(source, answer, "Forward")

    def _failed(self, source, request, failure) -> None:
        if failure.check(OutcomeUnknown):
            log.warn(
                "Forward: outcome unknown, reversal needed for {message}: {error}",
                message=maskMessage(request, binaryFieldsOf(source)),
                error=str(failure.value),
            )
            self._reject(source, request, self.unknownCode, None)
        elif failure.check(NotSent):
            log.info("Forward: not sent: {error}", error=str(failure.value))
            self._reject(source, request, self.notSentCode, None)
        else:
            log.failure("Forward: unexpected failure", failure)
            self._reject(source, request, self.notSentCode, None)

    def _reject(self, source, request, code, why) -> None:
        if why:
            log.warn("Forward: {why}", why=why)
        answer = {k: v for k, v in request.items() if k not in ("p", "1")}
        answer["t"] = responseMTI(request["t"])
        answer["39"] = code
        _answer(source, answer, "Forward")


#: Fields a Responder copies from the request: key, amounts, references.
ECHOED_FIELDS = ("2", "3", "4", "7", "11", "12", "13", "37", "41", "42", "49", "70")


@implementer(IRequestListener)
class Responder:
    """
    Answers every request: the response MTI, the request's key and amount
    fields, 39 from C{resultCode}, any C{fixed} fields, after C{delay}
    seconds.  Properties: C{result-code}, C{delay} (ms), C{fields} (extra
    ids to echo), and C{field.N} for a fixed value of field N.
    """

    def __init__(
        self,
        resultCode: str = "00",
        fixed: Optional[Mapping[str, str]] = None,
        delay: float = 0.0,
        echo: Sequence[str] = ECHOED_FIELDS,
        clock=None,
    ) -> None:
        self.resultCode = resultCode
        self.fixed = dict(fixed or {})
        self.delay = delay
        self.echo = tuple(echo)
        self.clock = clock
        self.answered = 0

    @classmethod
    def fromProperties(cls, properties: Mapping[str, str], clock=None) -> "Responder":
        fixed = {k[6:]: v for k, v in properties.items() if k.startswith("field.")}
        echo = ECHOED_FIELDS + parseFieldList(properties.get("fields", ""))
        return cls(
            properties.get("result-code", "00"),
            fixed,
            _seconds(properties.get("delay", 0)),
            echo,
            clock,
        )

    def response(self, message) -> dict:
        answer = {k: message[k] for k in self.echo if k in message}
        answer["t"] = responseMTI(message["t"])
        if "h" in message:
            answer["h"] = message["h"]
        answer["39"] = self.resultCode
        answer.update(self.fixed)
        return answer

    def process(self, source: ISource, message) -> bool:
        answer = self.response(message)
        if self.delay > 0:
            clock = self.clock
            if clock is None:
                from twisted.internet import reactor as clock
            clock.callLater(self.delay, self._send, source, answer)
        else:
            self._send(source, answer)
        return True

    def _send(self, source, answer) -> None:
        self.answered += 1
        _answer(source, answer, "Responder")
