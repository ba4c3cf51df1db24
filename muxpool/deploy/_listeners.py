"""
User code a descriptor names: request listeners by class (built-in or by
dotted path) and a QMUX's C{<unhandled>} handler; and how what that code
did wrong is said in a descriptor error.
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, Mapping, Tuple

from twisted.logger import Logger
from zope.interface import implementer

from muxpool._config import NoSuchModule, NoSuchName, importNamed
from muxpool._support import RateLimiter, describeError
from muxpool.interfaces import IRequestListener
from muxpool.listeners import Forward, Responder


def problemOf(error: Exception) -> str:
    """
    What a user's code did wrong, for a descriptor error: our own errors
    say it in words; anything else by type and place.
    """
    if isinstance(
        error, (KeyError, ValueError, TypeError, ImportError, AttributeError)
    ) and not isinstance(error, SyntaxError):
        text = str(error).strip('"')
        return f"{type(error).__name__}: {text}" if isinstance(error, KeyError) else text
    return describeError(error)


#: The built-in request listeners by the class names descriptors give them:
#: (the class, how to build it from properties, reactor and registry).
_LISTENERS: Dict[str, Tuple[type, Callable[..., IRequestListener]]] = {
    **dict.fromkeys(
        ("muxpool.listeners.Forward", "muxpool.Forward"),
        (
            Forward,
            lambda props, reactor, registry: Forward.fromProperties(
                props, registry.getMUX, reactor
            ),
        ),
    ),
    **dict.fromkeys(
        ("muxpool.listeners.Responder", "muxpool.Responder"),
        (Responder, lambda props, reactor, registry: Responder.fromProperties(props, reactor)),
    ),
}


def listenerClass(cls: str):
    """
    The class (or factory) a C{request-listener class} names: a built-in,
    or any dotted path.

    @raise ValueError: naming what is known.
    """
    if cls in _LISTENERS:
        return _LISTENERS[cls][0]
    if "." not in cls:
        raise ValueError(f"unknown class (known: {', '.join(sorted(_LISTENERS))})")
    try:
        return importNamed(cls)
    except NoSuchModule:
        raise ValueError(
            f"unknown class (known: {', '.join(sorted(_LISTENERS))}, or a dotted path "
            "to an IRequestListener)"
        ) from None
    except NoSuchName as e:
        raise ValueError(str(e)) from None


def makeListener(cls: str, props: Mapping[str, str], reactor, registry) -> IRequestListener:
    """
    A request listener by dotted path: the built-ins, or any class with a
    C{fromProperties(properties)} class method, or whose constructor takes
    the properties dict.
    """
    if cls in _LISTENERS:
        return _LISTENERS[cls][1](props, reactor, registry)
    factory = listenerClass(cls)
    if hasattr(factory, "fromProperties"):
        listener = factory.fromProperties(props)
    elif isinstance(factory, type) and len(inspect.signature(factory).parameters) >= 1:
        listener = factory(props)
    else:
        listener = factory()
    if not IRequestListener.providedBy(listener):
        raise TypeError("does not provide IRequestListener")
    return listener


@implementer(IRequestListener)
class UnhandledByName:
    """
    A QMUX's C{<unhandled>} naming something registered (an
    L{IRequestListener} or a callable given the message), looked up when a
    message comes, so deploy order does not matter.
    """

    log = Logger()

    def __init__(self, name: str, registry, clock=None) -> None:
        self.name = name
        self.registry = registry
        self._limiter = RateLimiter(clock=clock)

    def process(self, source, message) -> bool:
        target = self.registry.lookup(self.name)
        if IRequestListener.providedBy(target):
            return bool(target.process(source, message))
        if callable(target):
            target(message)
            return True
        self._limiter.emit(
            self.log.warn,
            "missing",
            "unhandled messages go nowhere: nothing named {name!r} is registered",
            name=self.name,
        )
        return False


def unhandledHandler(text: str, registry, clock=None):
    """
    What C{<unhandled>} names: a dotted path to an L{IRequestListener}
    class or object, or to a callable given the message; otherwise a name
    in C{registry} (see L{UnhandledByName}).
    """
    if "." in text and not text.startswith("org.jpos."):
        try:
            found = importNamed(text)
        except NoSuchModule:
            found = None  # a name in the registry, then
        except NoSuchName as e:
            raise ValueError(str(e)) from None
        if found is not None:
            if inspect.isclass(found):
                found = found.fromProperties({}) if hasattr(found, "fromProperties") else found()
            if IRequestListener.providedBy(found) or callable(found):
                return found
            raise TypeError(f"{text} is neither an IRequestListener nor callable")
    return UnhandledByName(text, registry, clock)
