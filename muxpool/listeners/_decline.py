"""
What a switch answers on its own: a decline (L{decline}) carrying only the
fields an acquirer matches it by, and an answer that could not be written
logged with what to reverse it by (L{sendAnswer}).
"""

from __future__ import annotations

from typing import Collection, Iterable, Mapping

from twisted.logger import Logger

from muxpool.errors import AnswerUndelivered, NotSent
from muxpool.interfaces import ISource
from muxpool.iso import HIDDEN, describeForReversal, responseMTI

log = Logger()


#: Fields a decline made here copies from the request (besides the MTI, made
#: a response, and 39): the key, amounts, dates and routing fields an
#: acquirer matches an answer by.  Never card data: see L{decline}.
DECLINE_FIELDS = (
    "h",
    "3",
    "4",
    "7",
    "11",
    "12",
    "13",
    "24",
    "32",
    "33",
    "37",
    "41",
    "42",
    "49",
    "100",
)


def decline(
    request: Mapping[str, str],
    code: str,
    fields: Iterable[str] = DECLINE_FIELDS,
    binaryFields: Collection[str] = (),
) -> dict:
    """
    The answer to C{request} that a switch gives on its own (a request it
    could not forward, a listener that failed): the response MTI, 39 =
    C{code} and the listed C{fields} the request has.  Fields the masking
    rules hide (tracks, PIN block, ICC data, every binary field) are never
    copied, whatever C{fields} says.
    """
    answer = {
        k: request[k] for k in fields if k in request and k not in HIDDEN and k not in binaryFields
    }
    answer["t"] = responseMTI(request["t"])
    answer["39"] = code
    return answer


def sendAnswer(source: ISource, response: Mapping[str, str], sender: str) -> bool:
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
        log.warn(
            "{sender}: could not answer ({error}): {answer}; reverse it if it was approved",
            sender=sender,
            error=str(e),
            answer=describeForReversal(response),
        )
        return False
    return True
