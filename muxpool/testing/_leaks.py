"""
What a stopped service must have let go of: a test asks how many of its
callbacks a link or a ready state still holds.
"""

from __future__ import annotations

from muxpool._support import Readiness
from muxpool.link import LinkBase


def attachmentsOf(link: LinkBase) -> int:
    """
    How many receivers and loss observers are attached to C{link} (a
    L{LinkBase}, such as a L{MemoryLink} or a ChannelAdaptor): a QMUX
    that stopped leaves none behind.
    """
    return len(link._receivers) + len(link._lossObservers)


def observersOf(readiness: Readiness) -> int:
    """
    How many observers watch C{readiness} (a link's, a MUX's or a pool's
    ready state): a stopped service leaves none.
    """
    return len(readiness._observers)
