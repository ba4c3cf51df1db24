"""
A real C{twistd -n muxpool} process for end-to-end tests, and the
C{muxpool} command-line tools run the same way.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

#: The console scripts of the venv the tests run in: what README's install
#: command built, run as a user runs them (no PYTHONPATH, no checkout on
#: sys.path).
BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
MUXPOOL = str(BIN / "muxpool")


def environment(extra=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra or {})
    return env


#: Every Twistd started by the current test (see L{endAll}).
_started = []


def endAll():
    """
    End every process the current test started and did not stop, whatever
    the test asserted before stopping it (the conftest calls this after
    each test).
    """
    while _started:
        proc = _started.pop()
        if proc.process.poll() is None:
            proc.stop()


def _limitDescriptors(pid, limit):
    import resource

    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))


class Twistd:
    """
    C{twistd -n muxpool --deploy DIR}, its log read line by line.
    """

    def __init__(self, deploy, cwd, env=None, scanInterval="0.2", args=(), fdLimit=None):
        """
        @param fdLimit: run it with this file descriptor limit (soft and
            hard), as a switch configured with a low C{ulimit -n} runs.
        """
        self.lines = []
        self._queue = queue.Queue()
        self.process = subprocess.Popen(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "muxpool",
                "--deploy",
                str(deploy),
                "--scan-interval",
                scanInterval,
                "--drain-timeout",
                "10",
                *args,
            ],
            cwd=str(cwd),
            env=environment(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if fdLimit is not None:  # at once, before it has opened its ports
            _limitDescriptors(self.process.pid, fdLimit)
        _started.append(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def waitFor(self, text, timeout=30.0, count=1):
        """
        Block until C{count} log lines (from the start) contain C{text};
        fail with the log so far if they do not come.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        for line in self.lines:
            if text in line:
                seen += 1
                if seen == count:
                    return line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"twistd never logged {text!r}:\n" + "".join(self.lines[-60:]))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"twistd exited before logging {text!r}:\n" + "".join(self.lines[-60:])
                )
            self.lines.append(line)
            if text in line:
                seen += 1
                if seen == count:
                    return line

    def waitForOutputEnd(self, timeout=30.0):
        """
        Block until every process writing to this log (twistd and any
        worker it started) has closed it: they have all ended.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("output still open:\n" + "".join(self.lines[-60:]))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)  # for stop()
                return
            self.lines.append(line)

    def stop(self, timeout=30.0, sig=signal.SIGTERM):
        """
        Send C{sig} (None: none, it is already stopping); return the exit
        code once it has ended.
        """
        if self.process.poll() is None and sig is not None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code

    def poll(self):
        """
        Take in what it has logged so far, without waiting.
        """
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._queue.put(None)  # for stop()
                return
            self.lines.append(line)

    def countLogged(self, text):
        """
        How many lines so far contain C{text} (without waiting).
        """
        self.poll()
        return sum(text in line for line in self.lines)

    def hasLogged(self, text, count=1):
        """
        Whether C{count} lines so far contain C{text} (without waiting).
        """
        self.poll()
        return sum(text in line for line in self.lines) >= count

    @property
    def log(self):
        return "".join(self.lines)


def tool(*args, timeout=120, cwd=None):
    """
    Run the venv's C{muxpool ARGS...}; return the completed process.
    """
    return subprocess.run(
        [MUXPOOL, *args],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def startTool(*args):
    return subprocess.Popen(
        [MUXPOOL, *args],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
