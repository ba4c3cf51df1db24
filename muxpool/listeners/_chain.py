"""
The chain of request listeners, as jPOS runs it: the first that handles a
message stops the chain.
"""

from __future__ import annotations

from typing import Dict, Iterable

from muxpool._support import describeCode, describeError
from muxpool.interfaces import IRequestListener, ISource


class ListenerFailed(Exception):
    """
    A request listener raised.  Names the listener's class and file and the
    error's type and place, never the error's text or the message.
    """


def offer(listeners: Iterable[IRequestListener], source: ISource, message: Dict[str, str]) -> bool:
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
                f"request listener {describeCode(listener)} failed: {describeError(e)}"
            ) from None
    return False
