"""
What a packager raises: a bad definition, a message it cannot pack, bytes it
cannot unpack.  None of them carries field data, so all are safe to log.
"""

from __future__ import annotations


class PackagerConfigError(ValueError):
    """
    A packager definition is wrong: names the source, the field and the problem.
    """


class PackError(ValueError):
    """
    A message could not be packed.  Carries the field id, never field data.
    """

    def __init__(self, field: str, reason: str) -> None:
        ValueError.__init__(self, f"cannot pack field {field}: {reason}")
        self.field = field
        self.reason = reason


class UnpackError(ValueError):
    """
    Bytes could not be unpacked.  Carries the field id and byte offset, never
    the bytes themselves (so it is safe to log).
    """

    def __init__(self, field: str, position: int, reason: str) -> None:
        ValueError.__init__(self, f"cannot unpack field {field} at byte {position}: {reason}")
        self.field = field
        self.position = position
        self.reason = reason
