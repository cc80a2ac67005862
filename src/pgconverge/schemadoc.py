"""docs/phases.md, every key of phases.yml, written from the JSON schema's own descriptions so it cannot drift from
what validate accepts (`python -m pgconverge.schemadoc > docs/phases.md`; a unit test compares)."""

from __future__ import annotations

import json
from typing import Any

from .spec import json_schema

# the sections in the order a reader meets them; each names the $defs entry it documents
SECTIONS = (("phases.yml", None), ("settings", "settings"), ("a phase (phases: [...])", "phase"),
            ("extensions", "extension"), ("indexes", "index"), ("materialized_views", "materialized_view"),
            ("views", "view"), ("policies", "policy"), ("row_level_security", "row_level_security"),
            ("functions", "function"), ("cron_jobs", "cron_job"), ("grants", "grant"), ("revokes", "revoke"),
            ("gates", "gate"), ("workload", "workload_query"))


def type_of(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """What a value may be, in a few words."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return type_of(defs[name], defs) if name in ("name", "qualified_name", "state", "duration", "names",
                                                       "grantees") else name
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if node.get("type") == "array":
        return f"list of {type_of(node.get('items', {}), defs)}"
    if "pattern" in node and node.get("type") == "string" and node["pattern"].startswith("^[0-9]{1,6}(ms"):
        return "duration (500ms, 3s, 30min)"
    kind = node.get("type", "any")
    return " or ".join(kind) if isinstance(kind, list) else kind


def table(node: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    required = set(node.get("required", ()))
    lines = ["| key | value | what it does |", "|---|---|---|"]
    for key, prop in node.get("properties", {}).items():
        mark = f"**{key}**" if key in required else key
        description = prop.get("description", "").replace("|", "\\|")
        lines.append(f"| {mark} | {type_of(prop, defs)} | {description} |")
    return lines


def render() -> str:
    schema = json_schema()
    defs = schema["$defs"]
    out = ["# phases.yml — every key", "",
           "Generated from src/pgconverge/schemas/phases.schema.json (`make docs`); **bold** keys are required.",
           "A phase's lists apply in dependency order whatever their order in the file; rollback goes the other way."]
    for title, name in SECTIONS:
        node = schema if name is None else defs[name]
        out += ["", f"## {title}", ""]
        if node.get("description"):
            out += [node["description"][:1].upper() + node["description"][1:] + ".", ""]
        out += table(node, defs)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
