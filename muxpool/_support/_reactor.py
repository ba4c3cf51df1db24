"""
The reactor a service uses when it is not given one.
"""

from __future__ import annotations

from typing import Any, Optional


def defaultReactor(reactor: Optional[Any]) -> Any:
    """
    C{reactor}, or the global reactor if it is None, imported only then
    (as Twisted's C{application.internet._maybeGlobalReactor}): importing
    muxpool never installs a reactor, and tests pass a C{task.Clock}.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        return globalReactor
    return reactor
