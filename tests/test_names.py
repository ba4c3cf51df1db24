"""
Every name a user writes keeps working: the class names descriptors give
(jPOS's, this project's dotted paths, and those of earlier releases), and
the built-in request listeners by their dotted paths.
"""

import pytest
from twisted.internet.testing import MemoryReactorClock

from muxpool import Forward, Responder
from muxpool.deploy import buildBean, readDescriptor
from muxpool.link import ChannelAdaptor, QServer
from muxpool.mux import QMUX, MUXPool
from muxpool.registry import Registry

CHANNEL = (
    '<channel class="NACChannel" packager="ISO87B">'
    '<property name="host" value="127.0.0.1"/><property name="port" value="9"/></channel>'
)


def build(tmp_path, text):
    path = tmp_path / "bean.xml"
    path.write_text(text)
    return buildBean(str(path), readDescriptor(str(path), {}), MemoryReactorClock(), Registry())


@pytest.mark.parametrize(
    "cls",
    [
        "org.jpos.q2.iso.ChannelAdaptor",
        "muxpool.ChannelAdaptor",
        "muxpool.link.ChannelAdaptor",
        "muxpool.adaptor.ChannelAdaptor",
    ],
)
def test_channel_adaptor_class_names(tmp_path, cls):
    bean = build(tmp_path, f'<channel-adaptor name="a" class="{cls}">{CHANNEL}</channel-adaptor>')
    assert isinstance(bean.service, ChannelAdaptor)


@pytest.mark.parametrize("cls", ["org.jpos.q2.iso.QMUX", "muxpool.QMUX", "muxpool.mux.QMUX"])
def test_qmux_class_names(tmp_path, cls):
    bean = build(tmp_path, f'<mux name="m" class="{cls}"><out>q</out></mux>')
    assert isinstance(bean.service, QMUX)


@pytest.mark.parametrize(
    "cls",
    ["org.jpos.q2.iso.MUXPool", "muxpool.MUXPool", "muxpool.mux.MUXPool", "muxpool.pool.MUXPool"],
)
def test_pool_class_names(tmp_path, cls):
    bean = build(tmp_path, f'<mux name="p" class="{cls}"><muxes>m1 m2</muxes></mux>')
    assert isinstance(bean.service, MUXPool)


@pytest.mark.parametrize(
    "cls",
    [
        "org.jpos.q2.iso.QServer",
        "muxpool.QServer",
        "muxpool.link.QServer",
        "muxpool.server.QServer",
    ],
)
def test_server_class_names(tmp_path, cls):
    bean = build(
        tmp_path,
        f'<server name="s" class="{cls}"><attr name="port">0</attr>'
        '<channel class="ASCIIChannel" packager="ISO87A"/></server>',
    )
    assert isinstance(bean.service, QServer)


@pytest.mark.parametrize(
    "cls, kind",
    [
        ("muxpool.listeners.Forward", Forward),
        ("muxpool.Forward", Forward),
        ("muxpool.listeners.Responder", Responder),
        ("muxpool.Responder", Responder),
    ],
)
def test_request_listener_class_names(tmp_path, cls, kind):
    properties = '<property name="mux" value="m"/>' if kind is Forward else ""
    bean = build(
        tmp_path,
        f'<server name="s"><attr name="port">0</attr>'
        f'<channel class="ASCIIChannel" packager="ISO87A"/>'
        f'<request-listener class="{cls}">{properties}</request-listener></server>',
    )
    assert isinstance(bean.service.listeners[0], kind)
