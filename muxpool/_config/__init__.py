"""
Private: reading what configuration says, in plain Python (nothing of
Twisted, so the codec may use it): yes/no, milliseconds and field lists as
descriptors write them, dotted paths to user code, endpoint descriptions,
whether a file changed, how many connections the process can hold, and
jPOS's address lists.
"""

from muxpool._config._endpoints import (
    BACKLOG,
    Endpoint,
    hostPort,
    parseEndpoint,
    tcpEndpoint,
)
from muxpool._config._filestamps import Stamp, fileStamp
from muxpool._config._imports import NoSuchModule, NoSuchName, importNamed
from muxpool._config._limits import defaultAdminConnections, defaultSessionLimit
from muxpool._config._patterns import matches, parsePatterns
from muxpool._config._settings import milliseconds, parseFieldList, yesNo

__all__ = [
    "BACKLOG",
    "Endpoint",
    "NoSuchModule",
    "NoSuchName",
    "Stamp",
    "defaultAdminConnections",
    "defaultSessionLimit",
    "fileStamp",
    "hostPort",
    "importNamed",
    "matches",
    "milliseconds",
    "parseEndpoint",
    "parseFieldList",
    "parsePatterns",
    "tcpEndpoint",
    "yesNo",
]
