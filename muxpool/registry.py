"""
The name registry: services by name, as jPOS's NameRegistrar.

Configuration refers to a MUX or a link by name; embedding code does the
same.  A name can be waited on before it exists (deploy order does not
matter for wiring).
"""

from typing import Dict, List, Optional

from twisted.internet.defer import Deferred, succeed

from muxpool._support import Waiters
from muxpool.interfaces import IMUX


class Registry:
    """
    Names -> objects; a name can be waited on before it is registered.
    """

    def __init__(self) -> None:
        self._objects: Dict[str, object] = {}
        self._waiters: Dict[str, Waiters] = {}

    def register(self, name: str, obj: object) -> None:
        """
        Bind C{name} to C{obj}, replacing what it named before.
        """
        self._objects[name] = obj
        waiters = self._waiters.pop(name, None)
        if waiters is not None:
            waiters.fire(obj)

    def unregister(self, name: str, obj: object = None) -> None:
        """
        Forget C{name} (only if it still names C{obj}, when given).
        """
        if name in self._objects and (obj is None or self._objects[name] is obj):
            del self._objects[name]

    def get(self, name: str) -> object:
        """
        @raise KeyError: naming the missing name.
        """
        try:
            return self._objects[name]
        except KeyError:
            raise KeyError(f"nothing named {name!r} is registered") from None

    def lookup(self, name: str) -> Optional[object]:
        """
        The object named C{name}, or None.
        """
        return self._objects.get(name)

    def getMUX(self, name: str) -> IMUX:
        obj = self.get(name)
        if not IMUX.providedBy(obj):
            raise KeyError(f"{name!r} is not a MUX")
        return obj

    def names(self) -> List[str]:
        return sorted(self._objects)

    def __contains__(self, name: str) -> bool:
        return name in self._objects

    def whenRegistered(self, name: str) -> Deferred:
        """
        Fires with the object named C{name}: now if it exists, else when it
        is registered.
        """
        if name in self._objects:
            return succeed(self._objects[name])
        return self._waiters.setdefault(name, Waiters()).wait()


#: The process-wide registry that descriptors and L{Forward} use by default.
defaultRegistry = Registry()
