"""Every module's DOCUMENTATION, EXAMPLES and RETURN is YAML that parses (ansible-doc and the
collection's docs read them); an unquoted colon in a description once broke pg_migrate's RETURN."""

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[4] / "plugins/modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_the_module_documentation_parses(module):
    blocks = {
        node.targets[0].id: node.value.value
        for node in ast.parse(module.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")
    }
    assert set(blocks) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, module.name
    for name, text in blocks.items():
        assert yaml.safe_load(text) is not None, f"{module.name} {name} is empty"
