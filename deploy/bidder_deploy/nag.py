"""cdk-nag's AwsSolutions checks, and acknowledging a finding where it arises, with a reason.

cdk-nag 3 runs as a CDK policy-validation plugin: synthesis fails on any finding, error or
warning, that is not acknowledged on the resource or one of its parents. An IAM wildcard
finding is acknowledged one by one, as `AwsSolutions-IAM5[Resource::...]`.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
