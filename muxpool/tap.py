"""
twistd plugin support: C{twistd -n muxpool --deploy DIR}.
"""

import os

from twisted.python import usage

from muxpool.deploy import DeployService


class Options(usage.Options):
    """
    Options for C{twistd muxpool}.
    """

    synopsis = "[--deploy DIR] [--scan-interval SECONDS] [--drain-timeout SECONDS]"
    longdesc = (
        "Run an ISO 8583 switch from a folder of jPOS-style descriptors "
        "(<channel-adaptor>, <mux> (QMUX or MUXPool), <server>), deployed in "
        "file-name order and rescanned for changes, as Q2 does."
    )
    optParameters = [
        ["deploy", "d", "deploy",
         "Folder of *.xml QBean descriptors (default: ./deploy, as in Q2)."],
        ["scan-interval", "s", 2.0,
         "Seconds between rescans of the deploy folder (0: never rescan).", float],
        ["drain-timeout", None, 30.0,
         "Seconds a replaced or removed bean gets to finish its in-flight requests.", float],
    ]

    def postOptions(self) -> None:
        directory = self["deploy"]
        if not os.path.isdir(directory):
            raise usage.UsageError(
                f"deploy folder {directory!r} does not exist "
                f"(looked in {os.path.abspath(directory)}); give one with --deploy DIR"
            )
        if self["scan-interval"] < 0 or self["drain-timeout"] < 0:
            raise usage.UsageError("--scan-interval and --drain-timeout must not be negative")


def makeService(options: Options) -> DeployService:
    """
    The deploy service for C{options}.
    """
    from twisted.internet import reactor

    return DeployService(
        options["deploy"],
        reactor,
        scanInterval=options["scan-interval"],
        drainTimeout=options["drain-timeout"],
    )
