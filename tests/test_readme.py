"""
README's promises, checked: every dotted path it names imports, and its
Python examples are valid code; the ones that are tests pass.
"""

import ast
import re

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def resolve(dotted: str) -> object:
    """
    The object a dotted path names: the longest importable module, then
    attributes.
    """
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ImportError(dotted)


@pytest.mark.parametrize(
    "dotted",
    sorted(
        {
            path.rstrip(".")
            for path in re.findall(r"\bmuxpool(?:\.[A-Za-z_][A-Za-z0-9_]*)+", README)
            if not path.endswith((".py", ".xml", ".html"))
            and not path.startswith("muxpool.iso.packagers._")
        }
    ),
)
def test_every_dotted_path_readme_names_imports(dotted):
    assert resolve(dotted) is not None


def test_readme_has_its_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_example_is_valid_python_and_its_imports_import(index):
    tree = ast.parse(BLOCKS[index], f"README example {index + 1}")
    imports = ast.Module(
        [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))], []
    )
    exec(compile(imports, f"README example {index + 1}", "exec"), {})


#: The public names of muxpool and muxpool.testing before the layers became
#: subpackages: each still imports from where it did.
NAMES_BEFORE = {
    "muxpool": """ChannelAdaptor ChannelSpec ISOChannelProtocol DeployService DuplicateKey
        EncodeFailed LinkLost LinkNotReady MissingKey NoMUXAvailable NotSent OutcomeUnknown
        RequestError RequestTimeout AnswerUndelivered CancelledAfterWrite CancelledBeforeWrite
        RequestCancelled StrategyFailed Forward Responder maskMessage KeyBuilder QMUX
        getPackager loadGenericPackager registerPackager MUXPool Registry defaultRegistry
        QServer strategyByName strategyByPath""",
    "muxpool.testing": """MemoryLink MemoryIssuer Rule answer PoolHarness outcomeOf runUntil
        startIssuer startLink LoopbackLink portOf defaultSpec""",
    "muxpool.listeners": "Forward Responder decline offer ListenerFailed DECLINE_FIELDS",
    "muxpool.masking": "maskMessage maskValue describeForReversal HIDDEN PARTIAL",
    "muxpool.logs": "jsonLines",
}


@pytest.mark.parametrize("module", sorted(NAMES_BEFORE))
def test_the_public_names_of_before_still_import(module):
    import importlib

    found = importlib.import_module(module)
    missing = [name for name in NAMES_BEFORE[module].split() if not hasattr(found, name)]
    assert missing == []
    exported = getattr(found, "__all__", None)
    if exported is not None:
        assert set(NAMES_BEFORE[module].split()) <= set(exported)


@pytest.mark.parametrize(
    "index", [i for i, block in enumerate(BLOCKS) if re.search(r"^def test_", block, re.M)]
)
def test_the_examples_that_are_tests_pass(index):
    namespace = {"__name__": f"readme_example_{index + 1}"}
    exec(compile(BLOCKS[index], f"README example {index + 1}", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()
