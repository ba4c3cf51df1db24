"""
L{give}: how a MUX hands a request's outcome to the layer above, once.
"""

from __future__ import annotations

from typing import Mapping, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from muxpool._support import describeCode, describeError
from muxpool.interfaces import IOutcome

log = Logger()


def give(
    outcome: Union[IOutcome, Deferred],
    result: Union[Mapping[str, str], BaseException, Failure],
    owner: str,
) -> None:
    """
    Hand C{result} (a response, or an exception or Failure) to C{outcome}.
    What the receiver raises is logged and goes no further, as a Deferred
    keeps its callbacks' errors: the MUX giving the outcome still has its
    own bookkeeping to finish (its drain, its count in flight), and the
    request has had its one outcome.
    """
    try:
        if isinstance(result, Failure):
            outcome.errback(result)
        elif isinstance(result, BaseException):
            outcome.errback(Failure(result))
        else:
            outcome.callback(result)
    except Exception as e:
        log.error(
            "{owner}: the receiver of an outcome ({receiver}) failed: {error}",
            owner=owner,
            receiver=describeCode(outcome),
            error=describeError(e),
        )
