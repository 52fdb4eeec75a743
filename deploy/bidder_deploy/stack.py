"""The app's two stacks: the data that outlives deployments, and the bidder that uses it.

The storage stack (key and bucket) is deployed first, so that the model's `model.tar.gz`
can be put in the bucket before the bidder's stack creates the endpoint that loads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, CfnOutput, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from bidder_deploy.model_endpoint import ModelEndpoint
from bidder_deploy.network import Network
from bidder_deploy.observability import Observability
from bidder_deploy.parameters import LISTENER_PORT, define_parameters
from bidder_deploy.service import Service
from bidder_deploy.storage import Storage, StorageRefs

STORAGE_STACK_NAME = "BidderStorage"
STACK_NAME = "Bidder"

# Fixed here rather than in cdk.json so the tests synthesize exactly what `cdk synth` does.
APP_CONTEXT = {
    # No AWS::CDK::Metadata resource: the template is the same whatever the CDK's version.
    "aws:cdk:version-reporting": False,
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/aws-ecs:removeDefaultDesiredCount": True,
    # CloudFormation's own template checks fail the synthesis, as cdk-nag's findings do.
    "@aws-cdk/core:validateAgainstDefaultRules": True,
}


class StorageStack(Stack):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Bidder: KMS key and bucket of model artifacts and recorded traffic",
        )
        self.storage = Storage(self, "Storage")


class BidderStack(Stack):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Bidder: OpenRTB bidder on ECS Fargate, model on a SageMaker endpoint",
        )
        params = define_parameters(self)
        network = Network(self, "Network")
        storage = StorageRefs.imported(self)
        self.model = ModelEndpoint(self, "Model", params=params, storage=storage)
        network.allow_invoke_only(self.model.endpoint_arn)
        self.service = Service(
            self, "Bidder", params=params, network=network, storage=storage, model=self.model
        )
        self.observability = Observability(
            self,
            "Observability",
            params=params,
            storage=storage,
            model=self.model,
            service=self.service,
        )
        for name, value, description in (
            (
                "BidUrl",
                f"http://{self.service.nlb.load_balancer_dns_name}:{LISTENER_PORT}/openrtb2/bid",
                "Where exchanges send bid requests (inside the VPC)",
            ),
            ("EndpointName", self.model.endpoint_name, "The SageMaker endpoint"),
            ("AlarmTopicArn", self.observability.topic.topic_arn, "Subscribe to get alarms"),
            ("DashboardName", self.observability.dashboard.dashboard_name, "CloudWatch dashboard"),
        ):
            CfnOutput(self, name, value=value, description=description)


@dataclass(frozen=True)
class Deployment:
    app: App
    storage: StorageStack
    bidder: BidderStack


def build_app(*, outdir: str | None = None) -> Deployment:
    """The CDK app that `deploy/app.py` synthesizes, with cdk-nag's AwsSolutions checks.

    `outdir` is where `app.synth()` writes the cloud assembly; without it, the directory
    the CDK command line names, or a temporary one.
    """
    app = App(context=APP_CONTEXT, outdir=outdir)
    storage = StorageStack(app, STORAGE_STACK_NAME)
    bidder = BidderStack(app, STACK_NAME)
    bidder.add_stack_dependency(storage, "imports the key and the bucket")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return Deployment(app=app, storage=storage, bidder=bidder)
