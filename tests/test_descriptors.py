"""
Descriptor parsing: every element, and every error naming file and line.
"""

import pytest

from muxpool.deploy import (
    MAX_DESCRIPTOR_BYTES,
    DescriptorError,
    buildBean,
    expand,
    readDescriptor,
)
from muxpool.link import ChannelAdaptor, QServer
from muxpool.listeners import Forward, Responder
from muxpool.mux import QMUX, MUXPool, RoundRobin, SplitByDivisor
from muxpool.registry import Registry
from tests.logcapture import capturedText


def build(tmp_path, text, name="bean.xml", env=None):
    path = tmp_path / name
    path.write_text(text)
    root = readDescriptor(str(path), env or {})
    from twisted.internet.testing import MemoryReactorClock

    return buildBean(str(path), root, MemoryReactorClock(), Registry())


ADAPTOR = """<channel-adaptor name="jpos-channel" class="org.jpos.q2.iso.ChannelAdaptor" logger="Q2">
  <channel class="org.jpos.iso.channel.NACChannel" logger="Q2"
           packager="org.jpos.iso.packager.ISO87BPackager" header="6000000000">
    <property name="host" value="${HOST:127.0.0.1}" />
    <property name="port" value="${PORT}" />
    <property name="timeout" value="300000" />
    <property name="connect-timeout" value="5000" />
    <property name="keep-alive" value="true" />
    <property name="max-packet-length" value="4096" />
  </channel>
  <in>jpos-send</in>
  <out>jpos-receive</out>
  <reconnect-delay>10000</reconnect-delay>
  <keep-alive>yes</keep-alive>
  <sign-on>yes</sign-on>
  <echo-interval>30000</echo-interval>
  <space>tspace:default</space>
</channel-adaptor>
"""


def test_channel_adaptor(tmp_path):
    bean = build(tmp_path, ADAPTOR, env={"PORT": "10000"})
    adaptor = bean.service
    assert isinstance(adaptor, ChannelAdaptor)
    assert (bean.name, bean.kind, bean.inQueue, bean.outQueue) == (
        "jpos-channel",
        "channel-adaptor",
        "jpos-send",
        "jpos-receive",
    )
    assert adaptor.spec.framing.name == "NACChannel"
    assert adaptor.spec.packager.name == "ISO87B"
    assert adaptor.spec.header == bytes.fromhex("6000000000")
    assert adaptor.spec.maxPacketLength == 4096
    settings = adaptor.settings
    assert settings.idleTimeout == 300 and settings.keepAlive and settings.tcpKeepAlive
    assert settings.signOn and settings.echoInterval == 30


def test_endpoint_property(tmp_path):
    bean = build(
        tmp_path,
        """<channel-adaptor name="c">
      <channel class="org.jpos.iso.channel.ASCIIChannel" packager="ISO87A">
        <property name="endpoint" value="tcp:127.0.0.1:9999:timeout=3"/>
        <property name="length-digits" value="6"/>
      </channel><in>a</in><out>b</out></channel-adaptor>""",
    )
    assert bean.service.spec.framing.length.width == 6


QMUX_XML = """<mux class="org.jpos.q2.iso.QMUX" logger="Q2" name="jpos-mux">
  <in>jpos-receive</in>
  <out>jpos-send</out>
  <ready>jpos-channel.ready</ready>
  <unhandled>jpos-unhandled</unhandled>
  <key>41, 11, 37</key>
  <key mti="08">11</key>
  <key mti="0200" pcode="310000">11</key>
  <mtimapping>0123456789 0123456789 0022446789</mtimapping>
  <ignore-rc>91 96</ignore-rc>
  <property name="return-rejects" value="true"/>
  <request-listener class="muxpool.listeners.Responder" logger="Q2">
    <property name="result-code" value="05"/>
  </request-listener>
</mux>
"""


def test_qmux(tmp_path):
    bean = build(tmp_path, QMUX_XML)
    mux = bean.service
    assert isinstance(mux, QMUX) and bean.kind == "qmux"
    assert bean.readyNames == ("jpos-channel.ready",) and bean.outQueue == "jpos-send"
    assert mux.keys.fields == ("41", "11", "37")
    assert mux.keys.overrides == {"08": ("11",), "02:310000": ("11",)}
    assert mux.keys.mtiMapping[2] == "0022446789"
    assert mux.ignoreRC == {"91", "96"} and mux.returnRejects
    assert isinstance(mux.listeners[0], Responder) and mux.listeners[0].resultCode == "05"


def test_mux_without_class_is_qmux(tmp_path):
    bean = build(tmp_path, '<mux name="m"><in>a</in><out>b</out></mux>')
    assert isinstance(bean.service, QMUX) and bean.service.unmatchedLimit == 16


def test_max_in_flight_of_a_mux_and_a_pool(tmp_path):
    xml = '<mux name="m"><out>b</out><max-in-flight>8</max-in-flight></mux>'
    assert build(tmp_path, xml).service.maxInFlight == 8
    pool = '<mux class="org.jpos.q2.iso.MUXPool" name="p"><muxes>a</muxes>%s</mux>'
    assert build(tmp_path, pool % "").service.maxInFlight is None
    assert build(tmp_path, pool % "<max-in-flight>100</max-in-flight>").service.maxInFlight == 100
    with pytest.raises(DescriptorError, match="max-in-flight must be 1 or more"):
        build(tmp_path, xml.replace(">8<", ">0<"))


def test_unmatched_limit(tmp_path):
    xml = '<mux name="m"><out>b</out><unmatched-limit>0</unmatched-limit></mux>'
    assert build(tmp_path, xml).service.unmatchedLimit == 0
    with pytest.raises(DescriptorError, match="bad number for unmatched-limit: 'x'"):
        build(tmp_path, xml.replace(">0<", ">x<"))


POOL_XML = """<mux class="org.jpos.q2.iso.MUXPool" logger="Q2" name="core-mux">
  <muxes>core-mux-primary core-mux-secondary</muxes>
  <strategy>split-by-divisor</strategy>
  <split-field>2</split-field>
  <property name="check-enabled" value="true"/>
</mux>
"""


def test_pool(tmp_path):
    bean = build(tmp_path, POOL_XML)
    pool = bean.service
    assert isinstance(pool, MUXPool) and bean.kind == "pool"
    assert bean.memberNames == ("core-mux-primary", "core-mux-secondary")
    assert isinstance(pool.strategy, SplitByDivisor) and pool.strategy.field == "2"
    assert pool.checkEnabled


def test_pool_strategy_handler_falls_back(tmp_path):
    bean = build(
        tmp_path,
        """<mux class="org.jpos.q2.iso.MUXPool" name="p">
      <muxes>a b</muxes><strategy>round-robin</strategy>
      <strategy-handler class="muxpool.mux.LeastPending"><property name="x" value="1"/></strategy-handler>
    </mux>""",
    )
    assert bean.service.strategy.name == "least-pending"
    assert isinstance(bean.service.fallback, RoundRobin)


SERVER_XML = """<server class="org.jpos.q2.iso.QServer" logger="Q2" name="xml-server-8000">
  <attr name="port" type="java.lang.Integer">8000</attr>
  <attr name="maxSessions" type="java.lang.Integer">7</attr>
  <channel class="org.jpos.iso.channel.ASCIIChannel" logger="Q2"
           packager="org.jpos.iso.packager.ISO87APackager">
  </channel>
  <request-listener class="muxpool.listeners.Forward" logger="Q2">
    <property name="mux" value="core-mux"/>
    <property name="timeout" value="15000"/>
  </request-listener>
  <property name="allow" value="127.0.0.1, 10.0.*"/>
  <property name="deny" value="10.0.0.66"/>
  <property name="bind-address" value="127.0.0.1"/>
</server>
"""


def test_server(tmp_path):
    bean = build(tmp_path, SERVER_XML)
    server = bean.service
    assert isinstance(server, QServer)
    settings = server.settings
    assert settings.maxSessions == 7
    assert settings.allow == ("127.0.0.1", "10.0.*") and settings.deny == ("10.0.0.66",)
    forward = server.listeners[0]
    assert isinstance(forward, Forward) and forward.timeout == 15


def test_expand():
    env = {"A": "x"}
    assert expand("${A}-${B:def}-${C:}", env, ("f", 1, "e")) == "x-def-"
    with pytest.raises(DescriptorError, match=r"f:3: <e>: \$\{B\} is not set"):
        expand("${B}", env, ("f", 3, "e"))


ERRORS = [
    ("<channel-adaptor name='c'>\n<channel class='X'>", r":2: <\?>: malformed XML"),
    (
        "<mux name='m' class='org.jpos.q2.iso.FooMUX'/>",
        r":1: <mux>: unknown class 'org.jpos.q2.iso.FooMUX'",
    ),
    ("<txnmgr name='t'/>", r":1: <txnmgr>: unknown descriptor"),
    ("<mux><in>a</in><out>b</out></mux>", r":1: <mux>: missing name"),
    (
        "<channel-adaptor name='c'>\n  <in>a</in>\n</channel-adaptor>",
        r":1: <channel-adaptor>: missing required element <channel>",
    ),
    (
        "<channel-adaptor name='c'>\n  <channel class='org.jpos.iso.channel.XMLChannel'>\n"
        "<property name='host' value='h'/><property name='port' value='1'/></channel>\n</channel-adaptor>",
        r":2: <channel>: unknown channel class 'org.jpos.iso.channel.XMLChannel'",
    ),
    (
        "<channel-adaptor name='c'>\n <channel class='NACChannel' packager='FooPackager'>"
        "<property name='host' value='h'/><property name='port' value='1'/></channel></channel-adaptor>",
        r":2: <channel>: unknown packager 'FooPackager'",
    ),
    (
        "<channel-adaptor name='c'>\n <channel class='NACChannel'>\n"
        "  <property name='host' value='h'/>\n  <property name='port' value='ten'/>\n</channel></channel-adaptor>",
        r":2: <channel>: bad number for port: 'ten'",
    ),
    (
        "<channel-adaptor name='c'>\n <channel class='NACChannel'/>\n</channel-adaptor>",
        r":2: <channel>: needs host and port",
    ),
    (
        "<channel-adaptor name='c'>\n <channel class='NACChannel'><property name='host' value='h'/>"
        "<property name='port' value='1'/></channel>\n<reconnect-delay>soon</reconnect-delay></channel-adaptor>",
        r":1: <channel-adaptor>: bad number for reconnect-delay: 'soon'",
    ),
    ("<mux name='m'>\n  <in>a</in>\n</mux>", r":1: <mux>: missing required element <out>"),
    (
        "<mux name='m'><in>a</in><out>b</out>\n<mtimapping>012 345</mtimapping></mux>",
        r":2: <mtimapping>: needs three strings",
    ),
    (
        "<mux class='org.jpos.q2.iso.MUXPool' name='p'>\n</mux>",
        r":1: <mux>: missing required element <muxes>",
    ),
    (
        "<mux class='org.jpos.q2.iso.MUXPool' name='p'><muxes>a</muxes>\n<strategy>round-robbin</strategy></mux>",
        r":2: <strategy>: unknown strategy 'round-robbin' \(known: .*round-robin",
    ),
    (
        "<mux class='org.jpos.q2.iso.MUXPool' name='p'><muxes>a</muxes>\n"
        "<strategy-handler class='muxpool.listeners.Responder'/></mux>",
        r":2: <strategy-handler>: .*does not implement IStrategy",
    ),
    (
        "<server name='s'>\n<channel class='NACChannel'/>\n</server>",
        r":1: <server>: missing required <attr name=\"port\">",
    ),
    (
        "<server name='s'>\n<attr name='port'>80x</attr><channel class='NACChannel'/></server>",
        r":2: <attr>: bad number for port",
    ),
    (  # found by fuzzing: it raised TypeError
        "<server name='s'>\n<attr name='port'></attr><channel class='NACChannel'/></server>",
        r":2: <attr>: port is empty",
    ),
    (
        "<server name='s'><attr name='port'>1</attr><channel class='NACChannel'/>\n"
        "<request-listener class='org.jpos.iso.IncomingListener'/></server>",
        r":2: <request-listener>: request listener 'org.jpos.iso.IncomingListener': unknown class",
    ),
    (
        "<server name='s'><attr name='port'>1</attr><channel class='NACChannel'/>\n"
        "<request-listener class='muxpool.listeners.Forward'/></server>",
        r":2: <request-listener>: request listener 'muxpool.listeners.Forward'",
    ),
]


@pytest.mark.parametrize("text,expected", ERRORS)
def test_errors_name_file_line_element(tmp_path, text, expected):
    with pytest.raises(DescriptorError, match=r"bad\.xml" + expected):
        build(tmp_path, text, name="bad.xml")


def test_unknown_elements_warn_with_file_and_line(tmp_path):
    with capturedText() as lines:
        build(
            tmp_path,
            "<mux name='m' logger='Q2' realm='r' colour='red'>\n<in>a</in><out>b</out>\n"
            "<frobnicate/>\n<space>x</space></mux>",
            name="warn.xml",
        )
    warnings = [line.split("\n")[0] for line in lines if "unknown" in line.split("\n")[0]]
    assert len(warnings) == 2
    assert warnings[0].endswith("warn.xml:1: <mux>: unknown attribute 'colour' ignored")
    assert warnings[1].endswith("warn.xml:3: <frobnicate>: unknown element ignored")


# -- misspellings, what changes the wire, QMUX and pool extras -----------------


def warningsOf(lines):
    return [line.split("\n")[0] for line in lines if "unknown" in line.split("\n")[0]]


def test_misspelt_settings_are_warnings_with_file_and_line(tmp_path):
    """
    Misspelt settings (maxSesions, a Forward timout, a channel hots) are
    warnings with file and line, never passed over silently.
    """
    with capturedText() as lines:
        build(
            tmp_path,
            """<server class="org.jpos.q2.iso.QServer" name="front">
  <attr name="port">8000</attr>
  <attr name="maxSesions">7</attr>
  <channel class="org.jpos.iso.channel.ASCIIChannel" packager="ISO87A">
    <property name="hots" value="x"/>
  </channel>
  <request-listener class="muxpool.listeners.Forward">
    <property name="mux" value="core-mux"/>
    <property name="timout" value="5000"/>
  </request-listener>
  <request-listener class="muxpool.listeners.Responder">
    <property name="field.44" value="me"/>
    <property name="result-cod" value="05"/>
  </request-listener>
  <property name="grace-periode" value="1"/>
</server>""",
            name="typo.xml",
        )
    warnings = sorted(warningsOf(lines), key=lambda w: int(w.split("typo.xml:")[1].split(":")[0]))
    assert len(warnings) == 5, warnings
    assert warnings[0].endswith(
        "typo.xml:3: <attr>: unknown attr 'maxSesions' ignored "
        "(known: maxSessions, minSessions, port)"
    )
    assert "typo.xml:5: <property>: unknown property 'hots' ignored" in warnings[1]
    assert "typo.xml:9: <property>: unknown property 'timout' ignored" in warnings[2]
    assert "timeout" in warnings[2]  # the known names are listed
    assert "typo.xml:13: <property>: unknown property 'result-cod' ignored" in warnings[3]
    assert "typo.xml:15: <property>: unknown property 'grace-periode' ignored" in warnings[4]


def test_the_jpos_article_descriptors_warn_about_nothing():
    from pathlib import Path

    from twisted.internet.testing import MemoryReactorClock

    folder = Path(__file__).parent / "fixtures" / "jpos-article"
    with capturedText() as lines:
        for path in sorted(folder.glob("*.xml")):
            root = readDescriptor(
                str(path), {"CORE_HOST": "h", "CORE_PORT_PRIMARY": "1", "CORE_PORT_SECONDARY": "2"}
            )
            buildBean(str(path), root, MemoryReactorClock(), Registry())
    assert [
        line
        for line in lines
        if "<LogLevel=warn>" in line or "<LogLevel=error>" in line or "<LogLevel=critical>" in line
    ] == []


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "<channel-adaptor name='c'><channel class='NACChannel'>\n"
            "<property name='host' value='h'/><property name='port' value='1'/>\n"
            "<filter class='org.jpos.iso.filter.MacroFilter' direction='outgoing'/>\n"
            "</channel><in>a</in><out>b</out></channel-adaptor>",
            r":3: <filter>: not supported: a filter changes what goes on the wire",
        ),
        (
            "<server name='s'><attr name='port'>1</attr><channel class='NACChannel'/>\n"
            "<server-socket-factory class='org.jpos.iso.GenericSSLSocketFactory'/></server>",
            r":2: <server-socket-factory>: not supported",
        ),
        (
            "<channel-adaptor name='c'><channel class='NACChannel'>\n"
            "<property name='socketFactory' value='org.jpos.iso.GenericSSLSocketFactory'/>\n"
            "<property name='host' value='h'/><property name='port' value='1'/>\n"
            "</channel><in>a</in><out>b</out></channel-adaptor>",
            r":2: <property>: property 'socketFactory' is not supported: .*tls:host:port",
        ),
    ],
)
def test_what_would_change_the_wire_is_refused(tmp_path, text, expected):
    """
    What would change the wire (a filter, a socket factory) is refused
    with file and line: the bean never runs without it.
    """
    with pytest.raises(DescriptorError, match=r"wire\.xml" + expected):
        build(tmp_path, text, name="wire.xml")


def test_qmux_key_header_unhandled_and_check_enabled(tmp_path, monkeypatch):
    (tmp_path / "late_approvals.py").write_text(
        "seen = []\ndef reverse(message):\n    seen.append(message)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    bean = build(
        tmp_path,
        """<mux name="m"><in>a</in><out>b</out>
      <key>41 11 header</key>
      <unhandled>late_approvals.reverse</unhandled></mux>""",
    )
    import late_approvals

    assert bean.service.keys.headerIsKey and bean.service.unhandled is late_approvals.reverse
    named = build(
        tmp_path, "<mux name='n'><in>a</in><out>b</out><unhandled>jpos-unhandled</unhandled></mux>"
    )
    assert named.references[0].name == "jpos-unhandled"
    assert named.references[0].what == "unhandled handler"
    pools = [
        build(
            tmp_path, f"<mux class='org.jpos.q2.iso.MUXPool' name='p'><muxes>a</muxes>{extra}</mux>"
        )
        for extra in (
            "<check-enabled>yes</check-enabled><suspend-after-timeouts>3</suspend-after-timeouts>",
            "<property name='check-enabled' value='true'/>",
            "",
        )
    ]
    assert [p.service.checkEnabled for p in pools] == [True, True, False]
    assert [p.service.suspendAfterTimeouts for p in pools] == [3, 0, 0]


def test_a_forward_records_the_mux_it_names(tmp_path):
    bean = build(tmp_path, SERVER_XML)
    [ref] = bean.references
    assert (ref.what, ref.name, ref.line, ref.element) == ("MUX", "core-mux", 7, "request-listener")


@pytest.mark.parametrize(
    "prologue, what",
    [
        ('<!DOCTYPE mux [<!ENTITY a "core">]>', "a DOCTYPE"),
        (
            '<!DOCTYPE mux [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
            "a DOCTYPE",
        ),
        ('<!DOCTYPE mux SYSTEM "http://127.0.0.1:9/x.dtd">', "a DOCTYPE"),
    ],
)
def test_doctypes_and_entities_are_refused(tmp_path, prologue, what):
    """
    A DOCTYPE (and so any entity: an entity bomb, an external entity) is
    refused before anything is expanded, naming the file and the line.
    """
    path = tmp_path / "bomb.xml"
    path.write_text(prologue + '\n<mux name="&c;"><out>q</out></mux>')
    with pytest.raises(DescriptorError, match=rf"bomb.xml:1: .*{what} is not allowed"):
        readDescriptor(str(path), {})


def test_a_descriptor_larger_than_the_limit_is_refused_unread(tmp_path):
    """
    A file larger than MAX_DESCRIPTOR_BYTES is refused with a clear error
    naming it, whatever it holds.
    """
    path = tmp_path / "huge.xml"
    padding = "<!-- " + "x" * MAX_DESCRIPTOR_BYTES + " -->"
    path.write_text(f'<mux name="m"><out>q</out></mux>{padding}')
    with pytest.raises(DescriptorError, match=r"huge.xml:0: .*larger than the 1024 KiB"):
        readDescriptor(str(path), {})


def test_a_large_text_is_read_whole(tmp_path):
    """
    An element's text that arrives in many pieces is read whole (the
    pieces are joined once, in linear time).
    """
    path = tmp_path / "big.xml"
    body = "41 " * 200000
    path.write_text(f'<mux name="m"><out>q</out><key>{body}11</key></mux>')
    root = readDescriptor(str(path), {})
    assert root.child("key").text.split() == ["41"] * 200000 + ["11"]
