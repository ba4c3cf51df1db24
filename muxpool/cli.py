"""
Command-line tools: C{muxpool send} and C{muxpool load}.

Both talk to an endpoint through the same parts a switch uses
(ChannelAdaptor + QMUX, and a MUXPool over several connections for load).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from typing import List, Optional

from twisted.internet import defer, task

from muxpool._config import parseFieldList
from muxpool.app import outcomeRecord, report, runLoad
from muxpool.channel import ChannelSpec
from muxpool.errors import CancelledBeforeWrite, LinkLost, NotSent, OutcomeUnknown, RequestTimeout
from muxpool.iso import defaultFields, maskMessage
from muxpool.link import AdaptorSettings, ChannelAdaptor
from muxpool.mux import QMUX, MUXPool, strategyByName
from muxpool.ops import addAdminArguments, runAdminCommand

#: What a switch's own declines mean (muxpool's Forward, by default).
DECLINES = {
    "91": "declined: not sent to the issuer",
    "68": "declined: outcome unknown, may need a reversal",
    "96": "declined: system malfunction",
}


def _field(text: str):
    key, sep, value = text.partition("=")
    if not sep or not (key.isdigit() or key in ("t", "h")):
        raise argparse.ArgumentTypeError(f"--field wants N=value, got {text!r}")
    return key, value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        default="tcp:127.0.0.1:8000",
        help="Twisted client endpoint (default: tcp:127.0.0.1:8000, the demo)",
    )
    parser.add_argument("--channel", default="ASCIIChannel", help="jPOS channel class")
    parser.add_argument("--packager", default="ISO87A", help="packager name or jPOS class")
    parser.add_argument("--packager-config", help="GenericPackager XML file")
    parser.add_argument("--header", help="channel header, hex")
    parser.add_argument("--mti", default="0200", help="message type (default 0200)")
    parser.add_argument(
        "--field",
        "-f",
        action="append",
        type=_field,
        default=[],
        metavar="N=VALUE",
        help="set field N (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument(
        "--ok-codes",
        type=lambda text: tuple(parseFieldList(text)),
        default=("00",),
        help="response codes (39) that count as success (default 00); any other "
        "answer, e.g. a switch's 91 or 68, makes the exit status 1",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="muxpool", description="ISO 8583 tools")
    commands = top.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send", help="send one message and print the response")
    _common(send)
    load = commands.add_parser("load", help="send many requests and summarise")
    _common(load)
    load.add_argument("-n", "--requests", type=int, default=1000)
    load.add_argument("-c", "--concurrency", type=int, default=10, help="requests in flight")
    load.add_argument("-k", "--connections", type=int, default=1)
    load.add_argument(
        "--split-field", default="44", help="response field that tells who answered (default 44)"
    )
    load.add_argument("--json", action="store_true", help="print the summary as JSON")
    load.add_argument(
        "--record",
        metavar="FILE",
        help="write each request's outcome to FILE, one JSON object a line "
        "(11, 41 and 39, or the failure)",
    )
    load.add_argument(
        "--quiet", action="store_true", help="no progress bar (there is one on a terminal only)"
    )
    status = commands.add_parser(
        "status", help="a running switch's pools, channels and servers (through its admin API)"
    )
    addAdminArguments(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    for verb, text in (
        ("enable", "put a MUX (back) into every pool's rotation"),
        ("disable", "take a MUX out of every pool's rotation"),
        ("drain", "disable a MUX and wait until nothing is in flight on it"),
    ):
        command = commands.add_parser(verb, help=text)
        command.add_argument("name", help="the MUX's name")
        addAdminArguments(command)
        if verb == "drain":
            command.add_argument(
                "--timeout", type=float, default=30.0, help="seconds to wait (default 30)"
            )
    return top


def _spec(args) -> ChannelSpec:
    props = {"packager-config": args.packager_config} if args.packager_config else {}
    return ChannelSpec.fromConfig(args.channel, args.packager, args.header, props)


def _connect(reactor, args, name: str):
    settings = AdaptorSettings(reconnectDelay=0.5, maxReconnectDelay=2.0, connectTimeout=5.0)
    adaptor = ChannelAdaptor(name, _spec(args), args.endpoint, reactor, settings)
    mux = QMUX(name, adaptor, reactor)
    adaptor.startService()
    mux.startService()
    return adaptor, mux


@defer.inlineCallbacks
def _connected(links, endpoint: str):
    """
    Wait for every adaptor's first connection; on the first that fails,
    say why and return False.
    """
    try:
        yield defer.gatherResults(
            [adaptor.whenConnected(failAfterFailures=1) for adaptor, _ in links], consumeErrors=True
        )
    except defer.FirstError as e:
        reason = next((a.lastFailure for a, _ in links if a.lastFailure), None)
        print(reason or f"cannot connect to {endpoint}: {e.subFailure.getErrorMessage()}")
        return False
    return True


def _message(args, stan: int) -> dict:
    message = defaultFields(args.mti, stan)
    message.update(dict(args.field))
    return message


@defer.inlineCallbacks
def _send(reactor, args):
    adaptor, mux = _connect(reactor, args, "send")
    try:
        if not (yield _connected([(adaptor, mux)], args.endpoint)):
            return 2
        message = _message(args, random.randint(1, 999999))
        binary = adaptor.spec.packager.binaryFields
        print(f"request  {maskMessage(message, binary)}")
        # A server refusing a session (maxSessions, allow/deny) closes it at
        # once, before reading anything: wait that long before writing, so
        # a refusal is told apart from a close after the request was read.
        if (yield _closedAtOnce(reactor, adaptor)):
            print(
                "refused: the server closed the connection at once, before the request "
                "was written (maxSessions reached, or not allowed); not sent"
            )
            return 4
        started = time.perf_counter()
        pending = mux.request(message, args.timeout)

        # A connection closed before the request is written ends it at once
        # ("not sent"), instead of waiting for a reconnection.
        def closed(reason: object) -> None:
            if not pending.called:
                pending.cancel()

        adaptor.addLossObserver(closed)
        try:
            response = yield pending
        except NotSent as e:
            if isinstance(e, CancelledBeforeWrite):
                print("the server closed the connection before the request was written; not sent")
            else:
                print(f"not sent: {e}")
            return 2
        except OutcomeUnknown as e:
            if isinstance(e, LinkLost):
                print("connection closed before an answer; outcome unknown")
            elif isinstance(e, RequestTimeout):
                print(f"no answer within {args.timeout:g}s; outcome unknown")
            else:
                print(f"outcome unknown: {e}")
            print(f"after    {(time.perf_counter() - started) * 1000:.1f} ms")
            return 3
        finally:
            adaptor.removeLossObserver(closed)
        print(f"response {maskMessage(response, binary)}")
        print(f"latency  {(time.perf_counter() - started) * 1000:.1f} ms")
        code = response.get("39")
        if code is not None and code not in args.ok_codes:
            print(f"answered 39={code}: {DECLINES.get(code, 'declined')}")
            return 1
        return 0
    finally:
        yield mux.stopService()
        yield adaptor.stopService()


#: How long `send` waits, connected, for a server that refuses the session
#: to close it before the request is written.
REFUSAL_WAIT = 0.2


def _closedAtOnce(reactor, adaptor) -> defer.Deferred:
    """
    Fires True if C{adaptor}'s connection is lost within L{REFUSAL_WAIT},
    else False.
    """
    if adaptor.protocol is None:
        return defer.succeed(True)
    result: defer.Deferred = defer.Deferred()

    def lost(reason: object) -> None:
        if not result.called:
            result.callback(True)

    def waited() -> None:
        if not result.called:
            result.callback(False)

    adaptor.addLossObserver(lost)
    timer = reactor.callLater(REFUSAL_WAIT, waited)

    def done(value: bool) -> bool:
        adaptor.removeLossObserver(lost)
        if timer.active():
            timer.cancel()
        return value

    return result.addCallback(done)


@defer.inlineCallbacks
def _load(reactor, args):
    links = [_connect(reactor, args, f"load-{i}") for i in range(max(1, args.connections))]
    if not (yield _connected(links, args.endpoint)):
        for adaptor, mux in links:
            yield mux.stopService()
            yield adaptor.stopService()
        return 2
    pool = MUXPool("load", [mux for _, mux in links], reactor, strategyByName("round-robin"))
    pool.startService()
    base = random.randint(0, 999) * 1000000

    def make(i):
        message = _message(args, i)
        message["41"] = "L%07d" % ((base + i) // 1000000 % 10000000)
        return message

    latencies: List[float] = []
    started = time.perf_counter()
    bar = None
    if not args.quiet and not args.json and sys.stderr.isatty():
        # Drawn only on a terminal: never into a file, a pipe or JSON.
        from tqdm import tqdm

        bar = tqdm(total=args.requests, unit="req", file=sys.stderr, mininterval=0.25)
    try:
        outcomes = yield runLoad(
            pool,
            args.requests,
            args.concurrency,
            args.timeout,
            start=base,
            make=make,
            latencies=latencies,
            onEach=None if bar is None else lambda i, result: bar.update(1),
        )
    finally:
        if bar is not None:
            bar.close()
        yield pool.stopService()
        for adaptor, mux in links:
            yield mux.stopService()
            yield adaptor.stopService()
    summary = report(
        outcomes, latencies, time.perf_counter() - started, args.split_field, args.ok_codes
    )
    if args.record:
        with open(args.record, "w") as record:
            for i, outcome in enumerate(outcomes):
                record.write(json.dumps(outcomeRecord(make(base + i), outcome)) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"sent             {summary['sent']}")
        for rc, count in summary["answered"].items():
            note = "" if rc in summary["ok_codes"] else f"  ({DECLINES.get(rc, 'declined')})"
            print(f"answered 39={rc:<4} {count}{note}")
        print(f"not sent         {summary['not_sent']}")
        print(f"outcome unknown  {summary['outcome_unknown']}")
        print(f"requests/second  {summary['requests_per_second']}")
        lat = summary["latency_ms"]
        print(f"latency ms       p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}")
        if summary.get("split"):
            print(f"split by field {args.split_field}:")
            for who, count in summary["split"].items():
                print(f"  {who:<24} {count}")
    return 0 if summary["failed"] == 0 else 1


def main(argv: Optional[List[str]] = None) -> None:
    """
    Entry point of the C{muxpool} console script.
    """
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `muxpool load | head` just ends
    args = parser().parse_args(argv)
    if args.command not in ("send", "load"):
        sys.exit(runAdminCommand(args))
    try:
        _spec(args)
    except (KeyError, ValueError) as e:
        sys.exit(f"muxpool {args.command}: {e}")
    command = _send if args.command == "send" else _load

    def run(reactor):
        return command(reactor, args).addCallback(lambda code: _exit.append(code))

    _exit: List[int] = []
    try:
        task.react(run)
    except SystemExit as e:
        if e.code not in (0, None) or not _exit:
            raise
    sys.exit(_exit[0] if _exit else 1)


if __name__ == "__main__":
    main()
