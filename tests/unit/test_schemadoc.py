"""docs/phases.md is the JSON schema's own text: regenerate it (make docs) when the schema changes."""

from pathlib import Path

from pgconverge import schemadoc
from pgconverge.spec import json_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "phases.md"


def test_docs_phases_md_is_generated_from_the_schema():
    assert DOC.read_text() == schemadoc.render(), "docs/phases.md is stale: run make docs"


def test_every_key_of_phases_yml_says_what_it_does():
    schema = json_schema()
    undescribed = [f"{name}.{key}" for name, node in [("phases.yml", schema), *schema["$defs"].items()]
                   for key, prop in node.get("properties", {}).items() if not prop.get("description")]
    assert undescribed == []
