"""
Descriptor files for deploy tests: issuers, members and a pool, on ports
the OS picked.
"""

import socket


def freePort() -> int:
    """
    A port the OS says is free on 127.0.0.1 (for a child process or a
    descriptor that must name its port before it listens).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def issuer(name, port, mark, header="", delay=0, record=None, extra=""):
    header = f' header="{header}"' if header else ""
    record = f'\n    <property name="record" value="{record}"/>' if record else ""
    return f"""<server class="org.jpos.q2.iso.QServer" logger="Q2" name="{name}">
  <attr name="port" type="java.lang.Integer">{port}</attr>
  <channel class="org.jpos.iso.channel.NACChannel" packager="org.jpos.iso.packager.ISO87BPackager"{header}/>
  <request-listener class="muxpool.listeners.Responder">
    <property name="field.44" value="{mark}"/>
    <property name="delay" value="{delay}"/>{record}
  </request-listener>
  <property name="bind-address" value="127.0.0.1"/>
  <property name="grace-period" value="5000"/>{extra}
</server>
"""


def adaptor(name, port, queue, extra=""):
    return f"""<channel-adaptor name="{name}" class="org.jpos.q2.iso.ChannelAdaptor" logger="Q2">
  <channel class="org.jpos.iso.channel.NACChannel" logger="Q2"
           packager="org.jpos.iso.packager.ISO87BPackager">
    <property name="host" value="127.0.0.1"/>
    <property name="port" value="{port}"/>
  </channel>
  <in>{queue}-send</in>
  <out>{queue}-receive</out>
  <reconnect-delay>100</reconnect-delay>{extra}
</channel-adaptor>
"""


def qmux(name, queue, extra=""):
    return f"""<mux class="org.jpos.q2.iso.QMUX" logger="Q2" name="{name}">
  <in>{queue}-receive</in>
  <out>{queue}-send</out>{extra}
</mux>
"""


def pool(name, members, strategy="round-robin", extra=""):
    return f"""<mux class="org.jpos.q2.iso.MUXPool" logger="Q2" name="{name}">
  <muxes>{" ".join(members)}</muxes>
  <strategy>{strategy}</strategy>{extra}
</mux>
"""


def front(name, port, mux, timeout=10000, extra="", channel=""):
    return f"""<server class="org.jpos.q2.iso.QServer" logger="Q2" name="{name}">
  <attr name="port" type="java.lang.Integer">{port}</attr>{extra}
  <channel class="org.jpos.iso.channel.ASCIIChannel" packager="org.jpos.iso.packager.ISO87APackager">{channel}</channel>
  <request-listener class="muxpool.listeners.Forward">
    <property name="mux" value="{mux}"/>
    <property name="timeout" value="{timeout}"/>
  </request-listener>
  <property name="bind-address" value="127.0.0.1"/>
</server>
"""


def member(directory, index, port=None):
    """
    Write issuer + adaptor + QMUX files for member C{index} (core-mux-N);
    return the files written.
    """
    port = port or freePort()
    files = {
        f"1{index}_issuer-{index}.xml": issuer(f"issuer-{index}", port, f"issuer-{index}"),
        f"2{index}_channel-{index}.xml": adaptor(f"channel-{index}", port, f"q{index}"),
        f"3{index}_core-mux-{index}.xml": qmux(f"core-mux-{index}", f"q{index}"),
    }
    for name, text in files.items():
        (directory / name).write_text(text)
    return [directory / name for name in files]


def singleIssuerSwitch(tmp_path):
    """
    Two folders under C{tmp_path}: C{issuer/} (one issuer) and C{switch/}
    (a channel to it, a QMUX and a front server).  Returns (issuer folder,
    switch folder, front port).
    """
    issuerDir, switchDir = tmp_path / "issuer", tmp_path / "switch"
    issuerDir.mkdir()
    switchDir.mkdir()
    issuerPort, frontPort = freePort(), freePort()
    (issuerDir / "10_issuer.xml").write_text(issuer("issuer-1", issuerPort, "issuer-1"))
    (switchDir / "20_channel.xml").write_text(adaptor("channel-1", issuerPort, "q1"))
    (switchDir / "30_mux.xml").write_text(qmux("core-mux", "q1"))
    (switchDir / "50_front.xml").write_text(front("front", frontPort, "core-mux"))
    return issuerDir, switchDir, frontPort
