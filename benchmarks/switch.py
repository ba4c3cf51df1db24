"""
A whole switch, measured as users compare switches: acquirer connections ->
QServer (ASCIIChannel, ISO87A) -> Forward -> MUXPool (round-robin) -> QMUX ->
ChannelAdaptor (NACChannel, ISO87A) -> issuer simulators, and back.

Issuer simulators, the switch under test (a real `twistd -n muxpool`) and the
load generator (`muxpool load`) are separate processes, all on 127.0.0.1.
One run prints one table: requests/s, p50/p99 latency and the switch's CPU
microseconds per transaction (utime + stime of its processes over answered
requests; "sys us" the stime part, the kernel's work) and the issuers' for
load straight to an issuer (the load side's ceiling), the switch with a pool
of 2 and of 32 members, and with 2 worker processes; at 1, 16 and 64
requests in flight over 1 and 4 acquirer connections; a bare Twisted relay
(relay.py: re-framing only, a floor under a switch on Twisted) on the
switch's interpreter over 2 and 32 issuer connections; then the switch's
memory per pending request (its resident size's growth over the second
25,000 of 50,000 requests waiting on a slow issuer).

    .venv/bin/python benchmarks/switch.py                      # CPython switch
    .venv/bin/python benchmarks/switch.py --python pypy3-venv/bin/python
    .venv/bin/python benchmarks/switch.py --python .venv/bin/python --python .pypy/bin/python
    .venv/bin/python benchmarks/switch.py --quick              # fewer rows, for a try

`--python` is the interpreter the switch runs on (it needs muxpool and its
dependencies installed); give it more than once to compare interpreters in one
run.  Issuers and load run on this one.  A PyPy switch also serves
--long requests (2,000,000) with README's PyPy settings while its resident
size is sampled.  Last, it prints the targets of the performance issue
(issue 20) against the run's figures.  The machine is
shared: run it alone, and compare figures from one run only.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(sys.executable).parent


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def issuerXML(name: str, port: int, delay: int = 0) -> str:
    return f"""<server class="org.jpos.q2.iso.QServer" name="{name}">
  <attr name="port">{port}</attr>
  <channel class="org.jpos.iso.channel.NACChannel" packager="org.jpos.iso.packager.ISO87APackager"/>
  <request-listener class="muxpool.listeners.Responder">
    <property name="field.44" value="{name}"/>
    <property name="delay" value="{delay}"/>
  </request-listener>
  <property name="bind-address" value="127.0.0.1"/>
  <property name="max-in-flight" value="100000"/>
</server>
"""


def switchFolder(folder: Path, issuerPorts, members: int, frontPort: int) -> None:
    names = []
    for i in range(members):
        port = issuerPorts[i % len(issuerPorts)]
        (folder / f"2{i:03d}_channel.xml").write_text(f"""<channel-adaptor name="channel-{i}">
  <channel class="org.jpos.iso.channel.NACChannel" packager="org.jpos.iso.packager.ISO87APackager">
    <property name="host" value="127.0.0.1"/><property name="port" value="{port}"/>
  </channel>
  <in>q{i}-send</in><out>q{i}-receive</out><reconnect-delay>1000</reconnect-delay>
</channel-adaptor>
""")
        (
            folder / f"3{i:03d}_mux.xml"
        ).write_text(f"""<mux class="org.jpos.q2.iso.QMUX" name="mux-{i}">
  <in>q{i}-receive</in><out>q{i}-send</out>
</mux>
""")
        names.append(f"mux-{i}")
    (folder / "40_pool.xml").write_text(f"""<mux class="org.jpos.q2.iso.MUXPool" name="core-mux">
  <muxes>{" ".join(names)}</muxes><strategy>round-robin</strategy>
</mux>
""")
    (folder / "50_front.xml").write_text(f"""<server class="org.jpos.q2.iso.QServer" name="front">
  <attr name="port">{frontPort}</attr>
  <channel class="org.jpos.iso.channel.ASCIIChannel" packager="org.jpos.iso.packager.ISO87APackager"/>
  <request-listener class="muxpool.listeners.Forward">
    <property name="mux" value="core-mux"/><property name="timeout" value="300000"/>
  </request-listener>
  <property name="bind-address" value="127.0.0.1"/>
  <property name="max-in-flight" value="100000"/>
</server>
""")


class Process:
    """
    A twistd process (or C{command}, run with C{python} and given C{args}),
    its log in a file; waits by reading the log.
    """

    def __init__(
        self,
        python: str,
        folder: Path,
        log: Path,
        *args: str,
        env: dict = None,
        command: list = None,
    ) -> None:
        self.log = log
        twistd = [python, "-c", "from twisted.scripts.twistd import run; run()"]
        self.process = subprocess.Popen(
            [python, *command, *args]
            if command
            else twistd
            + [
                "-n",
                "--pidfile=",
                "muxpool",
                "--deploy",
                str(folder),
                "--scan-interval",
                "0",
                *args,
            ],
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
            cwd=str(folder),
            env=dict(os.environ, **(env or {})),
        )

    def waitFor(self, text: str, count: int = 1, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.read_text().count(text) >= count:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"never saw {text!r} in {self.log}:\n{self.log.read_text()[-2000:]}")

    def pids(self):
        """
        The process and its children (worker processes).
        """
        pids = [self.process.pid]
        try:
            children = Path(
                f"/proc/{self.process.pid}/task/{self.process.pid}/children"
            ).read_text()
            pids += [int(p) for p in children.split()]
        except OSError:
            pass
        return pids

    def cpu(self, systemOnly: bool = False) -> float:
        """
        Seconds of CPU (user + system, or only system: the kernel's work
        for it) used so far by it and its workers.
        """
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (0 if systemOnly else int(fields[11])) + int(fields[12])
        return total / ticks

    def rss(self) -> int:
        total = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def loadCommand(port: int, total: int, inFlight: int, connections: int, timeout=30):
    """
    C{muxpool load} of C{total} requests to the front at C{port}
    (ASCIIChannel), its summary as JSON on stdout.
    """
    return [
        str(HERE / "muxpool"),
        "load",
        "--endpoint",
        f"tcp:127.0.0.1:{port}",
        "-n",
        str(total),
        "-c",
        str(inFlight),
        "-k",
        str(connections),
        "--json",
        "--quiet",
        "--timeout",
        str(timeout),
    ]


def load(port: int, channel: str, total: int, inFlight: int, connections: int, timeout=30):
    result = subprocess.run(
        loadCommand(port, total, inFlight, connections, timeout) + ["--channel", channel],
        capture_output=True,
        text=True,
    )
    if not result.stdout.strip():
        raise SystemExit(f"load failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def row(label, inFlight, connections, summary, cpu=None, issuerCpu=None, systemCpu=None):
    """
    Print one table row; return (requests/s, p50 ms, the switch's CPU us per
    transaction or None, the issuers' CPU us per transaction).
    """
    answered = sum(summary["answered"].values())
    failed = summary["failed"]
    latency = summary["latency_ms"]
    perTx = cpu * 1e6 / answered if cpu is not None and answered else None
    issuerTx = issuerCpu * 1e6 / answered if issuerCpu is not None and answered else None
    cpuText = f"{perTx:9.0f}" if perTx is not None else f"{'-':>9}"
    issuerText = f"{issuerTx:9.0f}" if issuerTx is not None else f"{'-':>9}"
    systemText = (
        f"{systemCpu * 1e6 / answered:7.0f}" if systemCpu is not None and answered else f"{'-':>7}"
    )
    print(
        f"{label:<28} {inFlight:>4} {connections:>3} {summary['requests_per_second']:>9.0f} "
        f"{latency['p50']:>7.2f} {latency['p99']:>7.2f} {cpuText} {systemText} {issuerText}"
        + (f"   ({failed} failed)" if failed else ""),
        flush=True,
    )
    return summary["requests_per_second"], latency["p50"], perTx, issuerTx


def measure(switch, port, label, shapes, total, issuers, warmup=0):
    figures = {}
    channel = "ASCIIChannel" if switch else "NACChannel"
    if warmup:
        # Figures of a switch that has run a while: PyPy's JIT needs tens
        # of thousands of requests to settle; CPython is warm at once.
        load(port, channel, warmup, 64, 4)
    for inFlight, connections in shapes:
        n = max(500, total // 8) if inFlight == 1 else total
        load(port, channel, min(n, 2000), inFlight, connections)  # warm up (JIT, caches)
        before = switch.cpu() if switch else None
        systemBefore = switch.cpu(systemOnly=True) if switch else None
        issuersBefore = sum(issuer.cpu() for issuer in issuers)
        summary = load(port, channel, n, inFlight, connections)
        cpu = switch.cpu() - before if switch else None
        system = switch.cpu(systemOnly=True) - systemBefore if switch else None
        issuerCpu = sum(issuer.cpu() for issuer in issuers) - issuersBefore
        figures[(inFlight, connections)] = row(
            label, inFlight, connections, summary, cpu, issuerCpu, system
        )
    return figures


def memoryPerPending(python, work, issuerPython, pending):
    """
    Resident size per request waiting in the switch for a slow issuer, in
    two steps: C{pending} / 2 requests, then as many again (other keys).
    The second step's growth over its requests is the figure: what one
    more pending request costs, without the switch's first-use growth
    (code and caches warming up, tables sized once), which the first step
    also pays.  Returns (pending, before, middle, after) in bytes.
    """
    slow = Path(tempfile.mkdtemp(prefix="slow-", dir=work))
    port = freePort()
    (slow / "10_issuer.xml").write_text(issuerXML("slow", port, delay=600000))
    issuer = Process(issuerPython, slow, slow / "issuer.log")
    issuer.waitFor("slow: listening")
    folder = Path(tempfile.mkdtemp(prefix="memory-", dir=work))
    frontPort, adminPort = freePort(), freePort()
    switchFolder(folder, [port], 2, frontPort)
    switch = Process(
        python, folder, folder / "switch.log", "--admin", f"tcp:{adminPort}:interface=127.0.0.1"
    )
    loaders = []

    def waitPending(count):
        deadline = time.monotonic() + 300
        inFlight = 0
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{adminPort}/status") as answer:
                status = json.loads(answer.read())
            inFlight = sum(m["in_flight"] for m in status["muxes"])
            if inFlight >= count:
                break
            time.sleep(0.5)
        return inFlight

    try:
        switch.waitFor("front: listening")
        switch.waitFor("channel-1: ready")
        before = switch.rss()
        half = pending // 2
        for step, terminal in enumerate(("T0000000", "T0000001")):
            command = loadCommand(frontPort, half, half, 25, timeout=300)
            loaders.append(
                subprocess.Popen(
                    command + ["--field", f"41={terminal}"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            inFlight = waitPending(half * (step + 1))
            if step == 0:
                middle = switch.rss()
        after = switch.rss()
        return inFlight, before, middle, after
    finally:
        for loader in loaders:
            loader.kill()
            loader.wait()
        switch.process.kill()  # 50,000 requests would drain for minutes
        switch.process.wait()
        issuer.stop()


#: What README recommends for a PyPy switch (and the container recipe
#: sets): a GC heap limit well above the working set, so memory levels off
#: instead of growing with the requests served.
PYPY_SETTINGS = {"PYPY_GC_MAX": "150MB"}


def memoryOverTime(python, work, ports, requests, env):
    """
    The switch's resident size, sampled every 5 s, over C{requests} at 64
    in flight on 4 connections through a pool of 2: [(seconds, bytes)].
    """
    folder = Path(tempfile.mkdtemp(prefix="long-", dir=work))
    frontPort = freePort()
    switchFolder(folder, ports, 2, frontPort)
    switch = Process(python, folder, folder / "switch.log", env=env)
    loader = None
    samples = []
    try:
        switch.waitFor("front: listening")
        switch.waitFor("channel-1: ready")
        began = time.monotonic()
        loader = subprocess.Popen(
            loadCommand(frontPort, requests, 64, 4, timeout=30),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while loader.poll() is None:
            samples.append((time.monotonic() - began, switch.rss()))
            try:
                loader.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        samples.append((time.monotonic() - began, switch.rss()))
        return samples
    finally:
        if loader is not None and loader.poll() is None:
            loader.kill()
            loader.wait()
        switch.stop()


def interpreter(python: str) -> str:
    return (
        subprocess.run(
            [
                python,
                "-c",
                "import sys, platform; print(platform."
                "python_implementation(), sys.version.split()[0])",
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or python
    )


#: jPOS 2.1.10's p50 at 1 in flight, end to end, in the same shape on this
#: machine kind (issue 20's table: jPOS is not installed here).
JPOS_P50_MS = 0.35


def targets(name, rows, memory, long) -> None:
    """
    Print the performance issue's targets against this run's figures (not
    asserted: a shared machine's figures are indicative).
    """
    pypy = name.startswith("PyPy")
    pool2, pool32 = rows["pool of 2"], rows["pool of 32"]
    lines = []
    shape = (64, 4) if (64, 4) in pool2 else next(iter(pool2))
    _, _, cpu, issuerCpu = pool2[shape]
    share = 0.40 if pypy else 0.60
    if cpu is not None and issuerCpu:
        lines.append(
            (
                f"CPU per transaction at {shape[0]} in flight at most {share:.2f} of an issuer's",
                f"{cpu:.0f} vs {issuerCpu:.0f} us: {cpu / issuerCpu:.2f}",
                cpu <= share * issuerCpu,
            )
        )
    for ones in [s for s in pool2 if s[0] == 1][:1]:
        p50 = pool2[ones][1]
        lines.append(
            (
                f"p50 at 1 in flight at or below jPOS's {JPOS_P50_MS} ms",
                f"{p50:.2f} ms",
                p50 <= JPOS_P50_MS,
            )
        )
    if long:
        peak = max(rss for _, rss in long) / 2**20
        third = max(1, len(long) // 3)
        middle = max(rss for _, rss in long[third : 2 * third] or long) / 2**20
        last = max(rss for _, rss in long[-third:]) / 2**20
        lines.append(
            (
                "resident memory below 200 MB over the long run",
                f"peak {peak:.0f} MiB",
                peak < 200 * 1e6 / 2**20,
            )
        )
        lines.append(
            (
                "resident memory steady (last third within 5% of the middle one)",
                f"{middle:.0f} -> {last:.0f} MiB",
                last <= 1.05 * middle,
            )
        )
    if memory is not None:
        lines.append(
            ("memory per pending request under 2 KB", f"{memory:.0f} bytes", memory < 2048)
        )
    _, _, cpu32, _ = pool32[shape]
    if cpu is not None and cpu32 is not None:
        lines.append(
            (
                "pool of 32 within 5% of a pool of 2 (CPU/tx)",
                f"{cpu32 / cpu - 1:+.1%}",
                cpu32 <= 1.05 * cpu,
            )
        )
    print(f"targets, switch on {name}:")
    for what, figure, met in lines:
        print(f"  {'met    ' if met else 'NOT met'}  {what}: {figure}")
    floors(rows, shape, share)


def floors(rows, shape, share) -> None:
    """
    Print the bare relay's figures against the same targets: the least a
    switch on Twisted and this interpreter costs in the same shape.
    """
    relay2, relay32 = rows.get("relay of 2"), rows.get("relay of 32")
    if not relay2 or shape not in relay2:
        return
    print("  a floor, a bare Twisted relay on the same interpreter (no decoding, no matching):")
    _, _, cpu, issuerCpu = relay2[shape]
    if cpu is not None and issuerCpu:
        print(
            f"    CPU per transaction at {shape[0]} in flight: {cpu:.0f} vs {issuerCpu:.0f} us: "
            f"{cpu / issuerCpu:.2f} of an issuer's (target {share:.2f})"
        )
    if (1, 1) in relay2:
        print(f"    p50 at 1 in flight: {relay2[(1, 1)][1]:.2f} ms (target {JPOS_P50_MS} ms)")
    if relay32 and shape in relay32 and cpu and relay32[shape][2] is not None:
        print(f"    relay of 32 against relay of 2 (CPU/tx): {relay32[shape][2] / cpu - 1:+.1%}")
    # What the switch costs above the relay is its own work on the messages:
    # a figure that does not move with the issuers' code, as the ratios do.
    pools = (("pool of 2", relay2), ("pool of 32", relay32 or {}))
    above = [
        f"{label} {rows[label][shape][2] - floor[shape][2]:.0f} us"
        for label, floor in pools
        if label in rows
        and shape in rows[label]
        and shape in floor
        and rows[label][shape][2] is not None
        and floor[shape][2] is not None
    ]
    if above:
        print(
            f"    the switch above the relay at {shape[0]} in flight (CPU/tx): " + ", ".join(above)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter to run the switch with (default: this one); "
        "give it twice, e.g. for CPython and PyPy, to compare them in one run",
    )
    parser.add_argument("--requests", type=int, default=20000, help="requests per row")
    parser.add_argument(
        "--pending",
        type=int,
        default=50000,
        help="requests waiting on a slow issuer, for the memory figure (0: no memory figure)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=30000,
        help="requests through each switch before its first row (JIT warm-up)",
    )
    parser.add_argument(
        "--long",
        type=int,
        default=2000000,
        help="requests through a PyPy switch for the memory-over-time figure "
        "(with README's PyPy settings; 0: none)",
    )
    parser.add_argument(
        "--pypy-env",
        default=",".join(f"{k}={v}" for k, v in PYPY_SETTINGS.items()),
        help="environment for a PyPy switch, K=V,K=V (default: README's settings; '' for none)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="64 in flight over 4 connections only, and no worker row",
    )
    args = parser.parse_args()
    # absolute, not resolved: a venv's python is a symlink that must stay one
    pythons = [os.path.abspath(shutil.which(p) or p) for p in args.python or [sys.executable]]
    shapes = [(64, 4)] if args.quick else [(f, c) for f in (1, 16, 64) for c in (1, 4)]
    work = Path(tempfile.mkdtemp(prefix="muxpool-switch-bench-"))
    names = {python: interpreter(python) for python in pythons}
    print(
        f"switch on {'; '.join(f'{n} ({p})' for p, n in names.items())}; issuers and load on "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"{os.cpu_count()} CPUs, {platform.machine()}; {args.requests} requests a row"
    )
    print(
        f"{'':<28} {'in':>4} {'con':>3} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU us/tx':>9} {'sys us':>7} {'issuer us':>9}"
    )
    issuers, ports = [], []
    for name in ("issuer-a", "issuer-b"):
        folder = work / name
        folder.mkdir()
        port = freePort()
        (folder / "10_issuer.xml").write_text(issuerXML(name, port))
        issuer = Process(sys.executable, folder, work / f"{name}.log")
        issuer.waitFor(f"{name}: listening")
        issuers.append(issuer)
        ports.append(port)
    results = []
    try:
        measure(None, ports[0], "direct to an issuer", shapes, args.requests, issuers[:1])
        pypyEnv = dict(kv.split("=", 1) for kv in args.pypy_env.split(",") if "=" in kv)
        for number, python in enumerate(pythons):
            short = names[python].split()[0]
            env = pypyEnv if short == "PyPy" else {}
            rows = {}
            for label, members, extra in (
                ("pool of 2", 2, ()),
                ("pool of 32", 32, ()),
                ("2 workers", 2, ("--workers", "2")),
            ):
                if extra and args.quick:
                    continue
                folder = work / f"{number}-{label.replace(' ', '-')}"
                folder.mkdir()
                frontPort = freePort()
                switchFolder(folder, ports, members, frontPort)
                switch = Process(python, folder, work / f"{folder.name}.log", *extra, env=env)
                try:
                    switch.waitFor("front: listening", count=2 if extra else 1)
                    switch.waitFor(f"channel-{members - 1}: ready", count=2 if extra else 1)
                    rows[label] = measure(
                        switch,
                        frontPort,
                        f"{short} switch, {label}",
                        [(64, 4)] if extra else shapes,
                        args.requests,
                        issuers,
                        args.warmup,
                    )
                finally:
                    switch.stop()
            for members in (2, 32):
                # A floor: what the reactor and the sockets cost a switch on
                # Twisted and this interpreter in the same shape.
                label = f"relay of {members}"
                frontPort = freePort()
                relay = Process(
                    python,
                    work,
                    work / f"{number}-relay-{members}.log",
                    env=env,
                    command=[str(Path(__file__).with_name("relay.py")), "--port", str(frontPort)]
                    + [f"--issuer=127.0.0.1:{port}" for port in ports]
                    + ["--members", str(members)],
                )
                try:
                    relay.waitFor("relay: ready")
                    rows[label] = measure(
                        relay,
                        frontPort,
                        f"{short} bare relay of {members}",
                        [(64, 4)] if args.quick else [(1, 1), (64, 4)],
                        args.requests,
                        issuers,
                        args.warmup,
                    )
                finally:
                    relay.stop()
            results.append((names[python], rows))
        memories = {}
        for python in pythons if args.pending else ():
            pending, before, middle, after = memoryPerPending(
                python, work, sys.executable, args.pending
            )
            second = max(1, pending - args.pending // 2)
            memories[names[python]] = (after - middle) / second
            print(
                f"{names[python]}: memory per pending request: {memories[names[python]]:.0f} bytes "
                f"(the second {second} of {pending} pending; switch RSS {before / 1e6:.1f} -> "
                f"{middle / 1e6:.1f} -> {after / 1e6:.1f} MB; "
                f"{(after - before) / max(1, pending):.0f} bytes each counting from the start)",
                flush=True,
            )
        longs = {}
        for python in pythons if args.long else ():
            if names[python].startswith("PyPy"):
                samples = memoryOverTime(python, work, ports, args.long, pypyEnv)
                longs[names[python]] = samples
                print(
                    f"{names[python]} ({args.pypy_env or 'no settings'}): resident MiB over "
                    f"{args.long} requests, every 5 s: "
                    + " ".join(f"{rss / 2**20:.0f}" for _, rss in samples),
                    flush=True,
                )
        for name, rows in results:
            targets(name, rows, memories.get(name), longs.get(name))
    finally:
        for issuer in issuers:
            issuer.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
