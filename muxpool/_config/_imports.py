"""
Dotted paths to user code (C{package.module.name}): how a descriptor, a
strategy handler or a packager names code muxpool does not own.
"""

from __future__ import annotations

import importlib
from typing import Any


class NoSuchModule(LookupError):
    """
    A dotted path's module does not exist.
    """


class NoSuchName(LookupError):
    """
    A dotted path's module has no such attribute.
    """


def importNamed(path: str) -> Any:
    """
    The object a dotted path (C{package.module.name}) names: how a
    descriptor, a strategy handler or a packager names user code.

    @raise NoSuchModule: its module cannot be found (or C{path} has no dot).
    @raise NoSuchName: its module has no such name.
    Anything else the module raises while imported (a SyntaxError, an
    import of its own that fails) propagates: it is the module's to fix.
    """
    module, _, name = path.rpartition(".")
    if not module:
        raise NoSuchModule(f"{path!r} is not a dotted path (module.name)")
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and (module + ".").startswith(e.name + "."):
            raise NoSuchModule(f"no module {module}") from None
        raise
    try:
        return getattr(found, name)
    except AttributeError:
        raise NoSuchName(f"module {module} has no {name}") from None
