"""The deployment's stack, synthesized once per test module: each synthesis runs the CDK's
JavaScript through jsii, which takes seconds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from bidder_deploy.stack import BidderStack, build_app


@dataclass(frozen=True)
class Synthesized:
    """The bidder's stack, and the resources of both stacks as plain JSON (for exact
    comparisons of policies)."""

    stack: BidderStack
    template: Template
    resources: dict[str, dict[str, Any]]
    parameters: dict[str, dict[str, Any]]
    # What the storage stack exports, by export name.
    exports: dict[str, Any]
    # The policy-validation report: CloudFormation's checks and cdk-nag's.
    report: dict[str, Any]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource["Type"] == resource_type
        }

    def one(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        (found,) = self.of_type(resource_type).items()
        return found


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    deployment = build_app(outdir=str(outdir))
    assembly = deployment.app.synth()
    storage = assembly.get_stack_artifact(deployment.storage.artifact_id).template
    raw = assembly.get_stack_artifact(deployment.bidder.artifact_id).template
    return Synthesized(
        stack=deployment.bidder,
        template=Template.from_json(raw),
        resources=storage["Resources"] | raw["Resources"],
        parameters=raw["Parameters"],
        exports={
            output["Export"]["Name"]: output["Value"] for output in storage["Outputs"].values()
        },
        report=json.loads((outdir / "validation-report.json").read_text()),
    )


def policy_statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    statements = document["Statement"]
    yield from statements if isinstance(statements, list) else [statements]


def as_list(value: Any) -> list[Any]:
    """IAM's single-or-list fields (Action, Resource) as a list."""
    return value if isinstance(value, list) else [value]


def strings_in(value: Any) -> Iterator[str]:
    """Every literal string inside a CloudFormation value, intrinsic functions included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
