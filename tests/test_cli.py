"""
The command-line tools: argument handling, and every way a request can end,
told apart.  They run as the venv's own C{muxpool} script.
"""

import json
import time

import pytest
import pytest_twisted
from twisted.internet import utils
from zope.interface import implementer

from muxpool.channel import ChannelSpec
from muxpool.cli import parser
from muxpool.interfaces import IRequestListener
from muxpool.listeners import Responder
from muxpool.testing import portOf, startIssuer, startLink
from tests.deployfiles import freePort
from tests.twistdproc import MUXPOOL, environment, tool


def reactor():
    from twisted.internet import reactor

    return reactor


def run(*args):
    """
    The venv's C{muxpool ARGS}, without blocking the reactor (the server it
    talks to runs in this process): fires with (stdout, stderr, code).
    """
    return utils.getProcessOutputAndValue(MUXPOOL, args, env=environment())


def test_fields_parse():
    args = parser().parse_args(["send", "-f", "4=000000001000", "--field", "41=TERM0001"])
    assert args.field == [("4", "000000001000"), ("41", "TERM0001")]
    assert args.endpoint == "tcp:127.0.0.1:8000" and args.mti == "0200"


def test_bad_field_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["send", "-f", "four=1"])
    assert info.value.code == 2
    assert "--field wants N=value" in capsys.readouterr().err


def test_unknown_channel_is_reported():
    result = tool("send", "--channel", "FooChannel")
    assert result.returncode != 0
    assert "unknown channel class 'FooChannel'" in result.stderr


def test_nobody_listening_says_refused_at_once():
    """
    A closed port is reported as refused at once: not after the request
    timeout, not as "link not ready", and with no latency for a request
    that was never sent.
    """
    # Right: one process start and one refused connection, seconds even on
    # a loaded machine.  Wrong: waiting out the 600 s request timeout.  The
    # bound sits far from both; a run killed at the subprocess timeout fails
    # too (TimeoutExpired), well before the wrong figure.
    started = time.monotonic()
    result = tool(
        "send", "--endpoint", f"tcp:127.0.0.1:{freePort()}", "--timeout", "600", timeout=120
    )
    assert result.returncode == 2
    assert "Connection was refused" in result.stdout, result.stdout
    assert "latency" not in result.stdout and "request" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert time.monotonic() - started < 60  # refused at once, not after the timeout


@pytest_twisted.inlineCallbacks
def test_a_field_the_packager_lacks_is_not_sent_cleanly():
    """
    `send -f 999=1` (a field the packager lacks) says "not sent", with no
    traceback.
    """
    server = yield startIssuer(reactor(), spec=ChannelSpec.fromConfig("ASCIIChannel", "ISO87A"))
    try:
        out, err, code = yield run(
            "send", "--endpoint", f"tcp:127.0.0.1:{portOf(server)}", "-f", "999=1"
        )
    finally:
        yield server.stopService()
    out, err = out.decode(), err.decode()
    assert code == 2, out + err
    assert "not sent" in out and "cannot pack field 999" in out
    assert "Traceback" not in out + err and "latency" not in out


@pytest_twisted.inlineCallbacks
def test_load_counts_a_switch_decline_as_a_failure():
    """
    `load` counts 39=68 answers as declined failures, and exits 1.
    """
    server = yield startIssuer(
        reactor(),
        [Responder(resultCode="68")],
        spec=ChannelSpec.fromConfig("ASCIIChannel", "ISO87A"),
    )
    try:
        out, err, code = yield run(
            "load",
            "--endpoint",
            f"tcp:127.0.0.1:{portOf(server)}",
            "-n",
            "20",
            "-c",
            "4",
            "--json",
            "--quiet",
        )
        text, textErr, textCode = yield run(
            "load", "--endpoint", f"tcp:127.0.0.1:{portOf(server)}", "-n", "5", "--quiet"
        )
    finally:
        yield server.stopService()
    summary = json.loads(out)
    assert code == 1, out + err.decode()
    assert summary["answered"] == {"68": 20}
    assert summary["declined"] == 20 and summary["failed"] == 20
    assert textCode == 1
    assert b"answered 39=68   5  (declined: outcome unknown, may need a reversal)" in text


@pytest_twisted.inlineCallbacks
def test_a_refused_session_is_said_apart_from_outcome_unknown():
    """
    A session refused at maxSessions is reported as refused (exit 4), not
    as "outcome unknown: link lost after the request was written".
    """
    server = yield startIssuer(
        reactor(), spec=ChannelSpec.fromConfig("ASCIIChannel", "ISO87A"), maxSessions=1
    )
    holder = startLink(
        reactor(),
        portOf(server),
        name="holder",
        spec=ChannelSpec.fromConfig("ASCIIChannel", "ISO87A"),
    )
    try:
        yield holder.whenReady()
        out, err, code = yield run(
            "send", "--endpoint", f"tcp:127.0.0.1:{portOf(server)}", "--timeout", "10"
        )
    finally:
        yield holder.stop()
        yield server.stopService()
    assert code == 4, out + err
    assert b"refused: the server closed the connection at once" in out
    assert b"outcome unknown:" not in out and b"Traceback" not in out + err


@implementer(IRequestListener)
class HangUp:
    """
    A listener that reads a request and closes the session unanswered.
    """

    def process(self, source, message):
        source.protocol.transport.loseConnection()
        return True


@pytest_twisted.inlineCallbacks
def test_a_close_after_the_request_was_read_is_outcome_unknown_not_refused():
    server = yield startIssuer(
        reactor(), [HangUp()], spec=ChannelSpec.fromConfig("ASCIIChannel", "ISO87A")
    )
    try:
        out, err, code = yield run(
            "send", "--endpoint", f"tcp:127.0.0.1:{portOf(server)}", "--timeout", "10"
        )
    finally:
        yield server.stopService()
    assert code == 3, out + err
    assert b"connection closed before an answer; outcome unknown" in out
    assert b"refused" not in out and b"Traceback" not in out + err


@pytest_twisted.inlineCallbacks
def test_send_labels_a_decline_and_exits_1():
    """
    `send` says what a switch's decline means (39=91: not sent to the
    issuer) and exits 1, as `load` does for any answer not in --ok-codes.
    """
    server = yield startIssuer(
        reactor(),
        [Responder(resultCode="91")],
        spec=ChannelSpec.fromConfig("ASCIIChannel", "ISO87A"),
    )
    try:
        out, err, code = yield run("send", "--endpoint", f"tcp:127.0.0.1:{portOf(server)}")
        ok, _, okCode = yield run(
            "send", "--endpoint", f"tcp:127.0.0.1:{portOf(server)}", "--ok-codes", "00 91"
        )
    finally:
        yield server.stopService()
    assert code == 1, out + err.decode()
    assert b"answered 39=91: declined: not sent to the issuer" in out
    assert okCode == 0 and b"answered 39" not in ok


@pytest_twisted.inlineCallbacks
def test_the_progress_bar_is_drawn_on_a_terminal_only():
    """
    `load` draws no progress bar into a pipe or a file (nor under --json):
    what it writes there is the summary alone.
    """
    server = yield startIssuer(reactor(), spec=ChannelSpec.fromConfig("ASCIIChannel", "ISO87A"))
    try:
        out, err, code = yield run(
            "load", "--endpoint", f"tcp:127.0.0.1:{portOf(server)}", "-n", "200"
        )
    finally:
        yield server.stopService()
    assert code == 0, out + err
    assert b"\r" not in err + out and b"req/s" not in err
    assert b"answered 39=00   200" in out


@pytest_twisted.inlineCallbacks
def test_on_a_terminal_load_draws_its_progress_bar():
    """
    On a terminal (a pty here), `load` draws its progress bar on stderr,
    to the last request.
    """
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    from twisted.internet.threads import deferToThread

    server = yield startIssuer(reactor(), spec=ChannelSpec.fromConfig("ASCIIChannel", "ISO87A"))
    terminal, stderr = pty.openpty()
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    try:
        done = yield deferToThread(
            subprocess.run,
            [MUXPOOL, "load", "--endpoint", f"tcp:127.0.0.1:{portOf(server)}", "-n", "200"],
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            timeout=60,
        )
        os.close(stderr)
        drawn = b""
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(terminal)
        yield server.stopService()
    assert done.returncode == 0, done.stdout
    assert b"200/200" in drawn, drawn
    assert b"200/200" not in done.stdout
