"""
What deploying one descriptor gives: a L{Bean}, and the names it uses
(L{Reference}s) that deploy must find.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple


@dataclass
class Reference:
    """
    A name a bean uses that deploy must find (a MUX, an unhandled handler),
    with where the descriptor says it.
    """

    what: str
    name: str
    line: int
    element: str
    consequence: str = ""


@dataclass(eq=False)
class Bean:
    """
    A deployed descriptor's service and what it is wired by.

    @ivar kind: C{channel-adaptor}, C{qmux}, C{pool} or C{server}.
    @ivar inQueue, outQueue: jPOS queue names (adaptors and QMUXes).
    @ivar readyNames: a QMUX's C{<ready>} names (C{adaptor.ready}).
    @ivar memberNames: a pool's C{<muxes>}.
    @ivar references: other names it uses (L{Reference}s), checked when
        deployed.
    @ivar source: the descriptor's bytes, to tell a rename from a change.
    """

    name: str
    kind: str
    service: Any  # by kind: a ChannelAdaptor, QMUX, MUXPool or QServer
    path: str
    inQueue: Optional[str] = None
    outQueue: Optional[str] = None
    readyNames: Tuple[str, ...] = ()
    memberNames: Tuple[str, ...] = ()
    references: List[Reference] = field(default_factory=list)
    source: bytes = b""
