"""
Calls into user code: how to name it when it fails.

A strategy, request listener, packager, plugin or observer is code muxpool
does not own.  When one raises, muxpool turns the failure into an outcome
or a log line that names the code (its class and the file it lives in) and
the error (its type and where it was raised), never the error's text, which
may carry the field values the code was given.
"""

from __future__ import annotations

import inspect
import os
import traceback
from typing import Any, Mapping, Optional

from twisted.python.failure import Failure


def describeCode(obj: object) -> str:
    """
    C{obj}'s class (or function) and the file it is defined in:
    C{"mypkg.strategies.Sticky (/srv/switch/mypkg/strategies.py)"}.
    """
    target: Any = obj  # a class, function or method, as inspect tells
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)):
        target = type(obj)
    if inspect.ismethod(target):
        owner = type(target.__self__)
        name = f"{owner.__module__}.{owner.__qualname__}.{target.__name__}"
        target = target.__func__
    else:
        name = (
            f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
        )
    try:
        source = inspect.getsourcefile(target) or inspect.getfile(target)
    except (TypeError, OSError):
        return name
    return f"{name} ({source})"


def describeError(error: BaseException) -> str:
    """
    C{error}'s type and the innermost place it was raised
    (C{"KeyError at strategies.py:42"}); never its text.

    A SyntaxError names the file and line it points at, which is what a
    user fixing a broken module needs.
    """
    kind = type(error).__name__
    if isinstance(error, SyntaxError) and error.filename:
        return f"{kind} at {error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    if not frames:
        return kind
    last = frames[-1]
    return f"{kind} at {os.path.basename(last.filename)}:{last.lineno}"


def notAMessage(result: object) -> Optional[Failure]:
    """
    C{None} when what a MUX's request gave is a message (a mapping); else a
    failure saying what came instead.  A member in user code may answer
    anything; its caller then ends the request as an outcome unknown
    instead of passing it on.
    """
    if type(result) is dict or isinstance(result, Mapping):
        return None
    return Failure(TypeError(f"answered with {type(result).__name__}, not a message"))
