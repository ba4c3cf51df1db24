"""
Logs for log shippers: C{twistd --logger=muxpool.logs.jsonLines ...} writes
every event as one JSON object a line on standard output, with its named
fields (C{event}, C{link}, C{mux}, C{pool}, C{server}, C{peer}, C{reason},
...) as keys.  Card data is masked before it is ever put in an event.
"""

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def jsonLines() -> ILogObserver:
    """
    A log observer writing JSON lines to standard output (a twistd
    C{--logger}).
    """
    return jsonFileLogObserver(sys.stdout, recordSeparator="")
