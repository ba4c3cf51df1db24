"""
The twistd plugin and its options.
"""

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from muxpool.deploy import DeployService
from muxpool.tap import Options, SwitchService, makeService


def test_plugin_is_found():
    import twisted.plugins

    makers = {m.tapname: m for m in getPlugins(IServiceMaker, twisted.plugins)}
    assert makers["muxpool"].module == "muxpool.tap"


def test_missing_deploy_folder_is_a_usage_error(tmp_path):
    with pytest.raises(usage.UsageError, match="does not exist"):
        Options().parseOptions(["--deploy", str(tmp_path / "nope")])


def test_default_is_deploy_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploy").mkdir()
    options = Options()
    options.parseOptions([])
    assert options["deploy"] == "deploy" and options["scan-interval"] == 2.0


def test_make_service(tmp_path):
    options = Options()
    options.parseOptions(
        ["--deploy", str(tmp_path), "--scan-interval", "0.5", "--drain-timeout", "7"]
    )
    service = makeService(options)
    assert isinstance(service, SwitchService)
    [deployer] = list(service)
    assert isinstance(deployer, DeployService)
    assert (deployer.scanInterval, deployer.drainTimeout) == (0.5, 7.0)


def test_negative_interval_refused(tmp_path):
    with pytest.raises(usage.UsageError, match="negative"):
        Options().parseOptions(["--deploy", str(tmp_path), "--scan-interval", "-1"])


def test_a_token_file_without_the_admin_api_is_a_usage_error(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret")
    with pytest.raises(usage.UsageError, match="--admin-token-file needs --admin"):
        Options().parseOptions(["--deploy", str(tmp_path), "--admin-token-file", str(token)])


def test_the_usage_line_names_every_option():
    assert "--workers N" in Options.synopsis
