"""
The multi-node recipes in deploy/, checked statically where they cannot
run here (no container engine or cluster in the test environment): each
file parses, every descriptor in it builds, and what they name (probe
paths, ports, options) exists in the code.  The HAProxy recipe itself runs
in tests/test_haproxy_e2e.py.
"""

import os
import shlex
import shutil
import subprocess

import pytest
import yaml
from twisted.internet.testing import MemoryReactorClock

from muxpool.deploy import buildBean, descriptorFiles, readDescriptor
from muxpool.ops import AdminResource, Operations
from muxpool.registry import Registry
from muxpool.tap import Options
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def beans(paths):
    """
    Build (not start) every descriptor, in deploy order; their kinds.
    """
    registry, reactor, kinds = Registry(), MemoryReactorClock(), {}
    for path in paths:
        bean = buildBean(str(path), readDescriptor(str(path), {}), reactor, registry)
        kinds[bean.name] = (bean.kind, bean.service)
    return kinds


def adminPaths():
    return set(AdminResource(Operations(Registry(), MemoryReactorClock())).children)


def entrypointOptions(tmp_path):
    """
    The Containerfile's ENTRYPOINT, parsed as twistd would parse its
    muxpool options (the deploy folder made to exist).
    """
    text = (DEPLOY / "container" / "Containerfile").read_text()
    line = text[text.index("ENTRYPOINT") :].split("\n\n")[0].replace("\\\n", " ")
    argv = yaml.safe_load(line[len("ENTRYPOINT") :])
    assert argv[:4] == ["twistd", "-n", "--pidfile=", "muxpool"], argv
    args = [str(tmp_path) if a == "/deploy" else a for a in argv[4:]]
    options = Options()
    os.environ["MUXPOOL_ADMIN_TOKEN"] = "t"  # as the compose file and the Deployment set
    try:
        options.parseOptions(args)
    finally:
        del os.environ["MUXPOOL_ADMIN_TOKEN"]
    return options


def test_the_haproxy_recipe_is_valid_and_asks_the_agent_and_proxy_v2(tmp_path):
    text = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    for needed in ("balance leastconn", "send-proxy-v2", "agent-check", " check "):
        assert needed in text, needed
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        pytest.skip("haproxy is not installed: its own check of the file is skipped")
    env = dict(os.environ, HAPROXY_STATS_SOCKET=str(tmp_path / "s"))  # -c binds nothing
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "vrrp_instance" in (DEPLOY / "haproxy" / "keepalived.conf").read_text()


def test_the_container_recipe(tmp_path):
    options = entrypointOptions(tmp_path)
    assert options["admin"] == "tcp:8080" and options["agent"] == "tcp:9100"
    assert options["drain-delay"] == 5
    compose = yaml.safe_load((DEPLOY / "container" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"node1", "node2", "haproxy", "issuer-a", "issuer-b"}
    env = services["haproxy"]["environment"]
    assert env["MUXPOOL_NODE1"] == "node1:8000" and env["MUXPOOL_AGENT2"] == "9100"
    address = services["haproxy"]["networks"]["default"]["ipv4_address"]
    node = beans(descriptorFiles(str(DEPLOY / "container" / "node")))
    front = node["front"][1]
    assert front.settings.proxyProtocol == "v2" and front.settings.proxyFrom == (address,)
    assert front.description.startswith("tcp:8000")
    assert {kind for kind, _ in node.values()} == {"channel-adaptor", "qmux", "pool", "server"}
    for issuer in ("issuer-a", "issuer-b"):
        folder = str(DEPLOY / "container" / issuer)
        assert beans(descriptorFiles(folder))[issuer][0] == "server"


def test_the_kubernetes_recipe(tmp_path):
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "switch.yaml").read_text()))
    byKind = {doc["kind"]: doc for doc in docs}
    assert set(byKind) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}
    for name, text in byKind["ConfigMap"]["data"].items():
        (tmp_path / name).write_text(text)
    node = beans(descriptorFiles(str(tmp_path)))
    front = node["front"][1]
    pod = byKind["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    options = entrypointOptions(tmp_path)  # the image's entrypoint (args: [])
    assert container["args"] == []
    # the probes ask paths the admin API serves, on its port
    paths = adminPaths()
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"].lstrip("/").encode() in paths and get["port"] == "admin"
    assert ports["admin"] == int(options["admin"].split(":")[1])
    assert ports["agent"] == int(options["agent"].split(":")[1])
    assert ports["iso8583"] == 8000 and front.description.startswith("tcp:8000")
    # preStop drains the node through the admin API
    preStop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "/drain" in preStop and b"drain" in paths
    wait = float(shlex.split(preStop.split("time.sleep(")[1].split(")")[0])[0])
    grace = front.settings.gracePeriod
    assert pod["terminationGracePeriodSeconds"] > wait + options["drain-delay"] + grace
    assert byKind["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
    [servicePort] = byKind["Service"]["spec"]["ports"]
    assert servicePort["targetPort"] == "iso8583"
