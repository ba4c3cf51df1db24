"""
L{Responder}: a small issuer simulator, for demos and tests.
"""

from __future__ import annotations

import json
from typing import IO, Dict, Mapping, Optional, Sequence

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from muxpool._config import milliseconds, parseFieldList
from muxpool._support import defaultReactor
from muxpool.interfaces import IRequestListener, ISource
from muxpool.iso import responseMTI
from muxpool.listeners._decline import sendAnswer

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
    def fromProperties(
        cls, properties: Mapping[str, str], clock: Optional[IReactorTime] = None
    ) -> "Responder":
        fixed = {k[6:]: v for k, v in properties.items() if k.startswith("field.")}
        echo = ECHOED_FIELDS + parseFieldList(properties.get("fields", ""))
        return cls(
            properties.get("result-code", "00"),
            fixed,
            milliseconds(properties.get("delay"), 0.0),
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
            defaultReactor(self.clock).callLater(self.delay, self._send, source, answer)
        else:
            self._send(source, answer)
        return True

    def _send(self, source: ISource, answer: Mapping[str, str]) -> None:
        self.answered += 1
        if sendAnswer(source, answer, "Responder") and self.record:
            if self._recordFile is None:
                self._recordFile = open(self.record, "a", buffering=1)
            self._recordFile.write(
                json.dumps({k: answer.get(k, "") for k in ("11", "41", "39")}) + "\n"
            )
