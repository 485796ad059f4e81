"""Vendor the parts of OpenAI's OpenAPI document that tests/test_conformance.py validates against.

The full document (github.com/openai/openai-openapi, MIT) is 3 MB; the test needs a few response schemas and
what they reference. This keeps those, turns the OpenAPI dialect into plain JSON Schema (2020-12) that the
`jsonschema` package checks, and writes `openai-schemas.json` next to this file with the source recorded:

    git -C <openai-openapi clone> show <commit>:openapi.json > /tmp/openapi.json
    python tests/spec/extract.py /tmp/openapi.json --commit <commit>

OpenAPI -> JSON Schema: `nullable: true` becomes a `"null"` type (or `anyOf` with `{"type": "null"}` around a
`$ref` or a composition); the 3.0 boolean `exclusiveMinimum` becomes the 3.1 number; `$recursiveRef: "#"`
becomes a `$ref` to its own schema; `$ref: "#/components/schemas/X"` becomes `"#/$defs/X"`. Only validation
keywords are kept: descriptions, examples, defaults, `discriminator`, `x-oai*`/`x-stainless-*` are dropped
(none of them constrains a value), so the file stays small and its diffs show changes of shape only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUT = HERE / "openai-schemas.json"
REPOSITORY = "https://github.com/openai/openai-openapi"

# The objects the server sends on the OpenAI routes, each checked against the schema of its name.
ROOTS = (
    "CreateChatCompletionStreamResponse",  # each chat.completion.chunk
    "CreateChatCompletionResponse",  # a non-streamed chat.completion
    "CreateCompletionResponse",  # each legacy text_completion chunk, and the non-streamed object
    "ResponseStreamEvent",  # the union of Responses SSE events: the test picks the member by `type`
    "Response",  # a non-streamed response
    "ErrorResponse",  # every error body
    "ListModelsResponse",  # GET /v1/models
    "Model",  # GET /v1/models/{model}
    "CreateEmbeddingResponse",  # POST /v1/embeddings
)

# What a schema may say in JSON Schema 2020-12 that constrains a value; the rest is annotation or OpenAPI's own.
KEYWORDS = frozenset(
    {
        "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "patternProperties",
        "propertyNames", "minProperties", "maxProperties", "items", "prefixItems", "contains", "minItems",
        "maxItems", "uniqueItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minLength", "maxLength", "pattern", "format", "anyOf", "oneOf", "allOf", "not", "if", "then", "else",
        "dependentRequired", "dependentSchemas",
    }
)  # fmt: skip
SUBSCHEMA = frozenset({"items", "contains", "not", "if", "then", "else", "propertyNames"})
SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
COMPONENT = re.compile(r"^#/components/schemas/([^/]+)$")


def load(path: Path) -> dict[str, Any]:
    """The whole document, JSON or YAML (libyaml when there: the YAML is 3 MB)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # a safe loader, C or Python


def referenced(schema: Any) -> set[str]:
    """The component names a schema refers to, directly."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and COMPONENT.match(value):
                found.add(COMPONENT.match(value).group(1))  # type: ignore[union-attr]
            elif key not in ("enum", "const", "example", "examples", "default", "x-oaiMeta"):
                found |= referenced(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= referenced(value)
    return found


def closure(components: dict[str, Any], roots: tuple[str, ...]) -> list[str]:
    """The roots and every component they reach, sorted."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in components:
            raise SystemExit(f"extract.py: the document has no components.schemas.{name}")
        seen.add(name)
        todo.extend(referenced(components[name]) - seen)
    return sorted(seen)


def convert(schema: Any, own: str) -> Any:
    """One OpenAPI schema object as JSON Schema 2020-12 (`own` is the component it belongs to)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$recursiveRef":
            if value != "#":
                raise SystemExit(f"extract.py: {own}: $recursiveRef {value!r} is not handled")
            out["$ref"] = f"#/$defs/{own}"
        elif key not in KEYWORDS:
            continue
        elif key == "$ref":
            match = COMPONENT.match(value)
            if match is None:
                raise SystemExit(f"extract.py: {own}: $ref {value!r} is not a component schema")
            out["$ref"] = f"#/$defs/{match.group(1)}"
        elif key in SUBSCHEMA:
            out[key] = convert(value, own)
        elif key in SUBSCHEMA_LISTS:
            out[key] = [convert(v, own) for v in value]
        elif key in SUBSCHEMA_MAPS:
            out[key] = {name: convert(v, own) for name, v in value.items()}
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = convert(value, own)
        else:
            out[key] = value
    if schema.get("exclusiveMinimum") is True:  # OpenAPI 3.0: a flag on `minimum`
        out["exclusiveMinimum"] = out.pop("minimum")
    if schema.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if schema.get("nullable") is True:
        out = nullable(out)
    return out


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`nullable: true` in JSON Schema: null is one more type (and enum value), or one more branch."""
    if any(key in schema for key in ("$ref", "anyOf", "oneOf", "allOf", "not")) or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    schema = {**schema, "type": [*types, "null"] if "null" not in types else types}
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


def vendor(document: dict[str, Any], commit: str, source: str) -> dict[str, Any]:
    components = document["components"]["schemas"]
    names = closure(components, ROOTS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            "Generated by tests/spec/extract.py from OpenAI's OpenAPI document (MIT licence: tests/spec/LICENSE);"
            " do not edit, regenerate (tests/spec/README.md)."
        ),
        "source": {
            "repository": REPOSITORY,
            "commit": commit,
            "path": source,
            "openapi": document.get("openapi"),
            "version": document.get("info", {}).get("version"),
            "licence": "MIT, Copyright (c) OpenAI (https://openai.com): tests/spec/LICENSE",
            "roots": list(ROOTS),
        },
        "$defs": {name: convert(components[name], name) for name in names},
    }


def dump(vendored: dict[str, Any]) -> str:
    """Compact JSON with one schema a line: a third of the indented size, and a diff names the schemas
    that changed."""
    compact = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
    head = {key: value for key, value in vendored.items() if key != "$defs"}
    lines = [f" {compact(key)}:{compact(value)}," for key, value in sorted(head.items())]
    defs = [f"  {compact(name)}:{compact(schema)}" for name, schema in sorted(vendored["$defs"].items())]
    return "{\n" + "\n".join(lines) + '\n "$defs":{\n' + ",\n".join(defs) + "\n }\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("document", type=Path, help="openapi.json or openapi.yaml of openai/openai-openapi")
    parser.add_argument("--commit", required=True, help="the openai-openapi commit the document is from")
    parser.add_argument("--path", default=None, help="its path in that repository (default: the file's name)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default: {OUT.name} here)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[0-9a-f]{40}", args.commit):
        parser.error("--commit: the full 40-hex commit hash")
    vendored = vendor(load(args.document), args.commit, args.path or args.document.name)
    args.out.write_text(dump(vendored), encoding="utf-8")
    print(f"{args.out}: {len(vendored['$defs'])} schemas, {args.out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
