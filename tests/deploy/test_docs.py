"""deploy/README.md documents every parameter of the bidder's stack, with its default."""

from __future__ import annotations

import re

from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from bidder_deploy.parameters import define_parameters

from .conftest import DEPLOY_DIR

ROW = re.compile(r"^\| `(?P<name>[A-Za-z]+)` \| (?P<default>[^|]+) \|", re.MULTILINE)


def test_the_readme_lists_every_parameter_with_its_default() -> None:
    stack = Stack(App(), "Parameters")
    define_parameters(stack)
    declared = Template.from_stack(stack).to_json()["Parameters"]
    declared.pop("BootstrapVersion")  # the CDK's own, checked by `cdk deploy`
    text = (DEPLOY_DIR / "README.md").read_text()
    section = text.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    documented = {row["name"]: row["default"].strip() for row in ROW.finditer(section)}
    assert documented == {
        name: f"`{parameter['Default']}`" if "Default" in parameter else "required"
        for name, parameter in declared.items()
    }
