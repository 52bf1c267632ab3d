"""report.schema.json and a checker of the JSON-schema subset it uses (no jsonschema dependency).

Keywords understood: type (a name or a list), properties, required, additionalProperties (false or a
schema), items, enum, anyOf, maxProperties. Anything else in a schema is ignored, so keep to these."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

_TYPES = {  # bool is an int in Python but not in JSON: excluded from the numbers
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


@lru_cache(maxsize=1)
def report_schema() -> dict:
    """The schema of report.json, shipped with the package."""
    return json.loads(resources.files("edgepack").joinpath("report.schema.json").read_text(encoding="utf-8"))


def schema_errors(value, schema: dict | None = None, where: str = "report") -> list[str]:
    """Every place ``value`` (plain JSON data) breaks ``schema`` (default: the report's), one line each."""
    schema = report_schema() if schema is None else schema
    if "anyOf" in schema:
        options = [schema_errors(value, s, where) for s in schema["anyOf"]]
        if all(options):
            return [f"{where}: matches none of {len(options)} shapes ({'; '.join(o[0] for o in options)})"]
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_TYPES[n](value) for n in names):
            return [f"{where}: {type(value).__name__} {json.dumps(value, default=str)[:40]} is not {'/'.join(names)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    errors = _object_errors(value, schema, where) if isinstance(value, dict) else []
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def _object_errors(value: dict, schema: dict, where: str) -> list[str]:
    errors = []
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(f"{where}: {len(value)} keys, at most {schema['maxProperties']} allowed")
    errors += [f"{where}: missing key '{k}'" for k in schema.get("required", []) if k not in value]
    props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            errors += schema_errors(item, props[key], f"{where}.{key}")
        elif extra is False:
            errors.append(f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(props))})")
        elif isinstance(extra, dict):
            errors += schema_errors(item, extra, f"{where}.{key}")
    return errors
