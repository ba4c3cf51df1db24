"""
C{twistd --logger=muxpool.logs.jsonLines ...}: every event as one JSON
object a line (see L{muxpool.ops.jsonLines}); this name is kept for that
command line.
"""

from muxpool.ops import jsonLines

__all__ = ["jsonLines"]
