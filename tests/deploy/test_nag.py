"""cdk-nag really checks the stack: a finding nobody acknowledged fails the synthesis
(`test_stack` shows the stack itself has none)."""

from __future__ import annotations

import json

import pytest
from aws_cdk import aws_iam as iam

from bidder_deploy.stack import build_app


def test_an_unacknowledged_wildcard_fails_the_synthesis(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    outdir = tmp_path_factory.mktemp("cdk.out")
    deployment = build_app(outdir=str(outdir))
    role = iam.Role(
        deployment.bidder, "Careless", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com")
    )
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=["*"]))
    with pytest.raises(RuntimeError, match=r"AwsSolutions-IAM5\[Resource::\*\]"):
        deployment.app.synth()
    report = json.loads((outdir / "validation-report.json").read_text())
    findings = [
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]
    assert findings == [
        ("AwsSolutions-IAM5[Resource::*]", "Bidder/Careless/DefaultPolicy/Resource")
    ]
