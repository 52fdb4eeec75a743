"""The OpenRTB JSON Schemas in `openrtb_schemas/`, loaded for tests.

    from tests.schemas import validator
    validator("bid-response", "2.6").validate(json.loads(body))

Every schema is registered under its `$id` in a local registry that retrieves nothing, so
validating never touches the network.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

Kind = Literal["bid-request", "bid-response"]
Version = Literal["2.5", "2.6"]

SCHEMAS_DIR: Final = Path(__file__).resolve().parents[1] / "openrtb_schemas"
KINDS: Final[tuple[Kind, ...]] = ("bid-request", "bid-response")
VERSIONS: Final[tuple[Version, ...]] = ("2.5", "2.6")


def schema_path(kind: Kind, version: Version) -> Path:
    return SCHEMAS_DIR / f"{kind}-{version}.json"


def load_schema(kind: Kind, version: Version) -> dict[str, Any]:
    """A fresh copy of one schema; callers may change it."""
    schema: dict[str, Any] = json.loads(schema_path(kind, version).read_text(encoding="utf-8"))
    return schema


@cache
def registry() -> Registry[Any]:
    """Every schema under its `$id`; any other reference is unresolvable, never fetched."""
    resources: list[tuple[str, Resource[Any]]] = []
    for kind in KINDS:
        for version in VERSIONS:
            schema = load_schema(kind, version)
            resources.append((schema["$id"], DRAFT202012.create_resource(schema)))
    return Registry().with_resources(resources)


@cache
def validator(kind: Kind, version: Version) -> Draft202012Validator:
    """A cached validator of one schema."""
    schema = registry().contents(load_schema(kind, version)["$id"])
    return Draft202012Validator(schema, registry=registry())
