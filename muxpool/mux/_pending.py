"""
L{_Pending}: one request in a QMUX's table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Union, cast

from twisted.internet.defer import Deferred

from muxpool._support import Entry
from muxpool.interfaces import ILink, IOutcome

if TYPE_CHECKING:
    from muxpool.mux._qmux import QMUX


class _Pending:
    """
    One request in the table: where its outcome goes, its deadline entry
    and state.

    @ivar link: the link it was written on; None until it is written.
    """

    __slots__ = (
        "mux",
        "key",
        "message",
        "outcome",
        "entry",
        "link",
        "started",
        "done",
    )

    def __init__(
        self,
        mux: "QMUX",
        key: str,
        message: Mapping[str, str],
        outcome: Optional[IOutcome],
        started: float,
    ) -> None:
        self.mux = mux
        self.key = key
        self.message = message
        # Where its outcome goes: the caller's L{IOutcome}, or for
        # L{QMUX.request} a Deferred that cancels it.
        self.outcome: Union[IOutcome, Deferred] = (
            Deferred(self.cancel) if outcome is None else outcome
        )
        self.entry: Optional[Entry] = None
        self.link: Optional[ILink] = None
        self.started = started
        self.done = False

    @property
    def deadline(self) -> float:
        """
        When it ends unanswered, while it is in the table: kept in its
        deadline entry only (one float less per request).
        """
        entry = self.entry
        return float("-inf") if entry is None else cast(float, entry[0])

    def cancel(self, deferred: Optional[Deferred] = None) -> None:
        """
        End it as cancelled (L{QMUX.request}'s Deferred's canceller, a
        bound method: smaller than a closure; L{QMUX.requestTo}'s handle).
        """
        self.mux._cancel(self)
