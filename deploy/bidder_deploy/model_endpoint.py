"""The SageMaker Model, EndpointConfig and Endpoint that serve the model, with auto scaling.

The model image is the project's bring-your-own container (`docker/model-server/Dockerfile`)
pushed to ECR; the model data is a `model.tar.gz` in the artifact bucket. The container runs
with network isolation: it needs no network beyond the invocations SageMaker hands it.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnElement, Duration, Names, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from bidder_deploy.nag import acknowledge
from bidder_deploy.parameters import (
    LOG_RETENTION,
    MODEL_VARIANT,
    Parameters,
    ecr_repository_arn,
)
from bidder_deploy.storage import StorageRefs

# Where SageMaker writes an endpoint's logs: this prefix and the endpoint's name.
ENDPOINT_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
# Application Auto Scaling's service-linked role for SageMaker variants (it creates it when
# the first variant is registered).
# SageMaker's limit on an endpoint's name.
ENDPOINT_NAME_MAX_LENGTH = 63
SCALING_ROLE = (
    "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


class ModelEndpoint(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, params: Parameters, storage: StorageRefs
    ) -> None:
        super().__init__(scope, construct_id)
        # Named here rather than by CloudFormation, so that its log group can be made first,
        # with a retention, where SageMaker would otherwise create one that keeps every event
        # forever; and the role may then write to that one group only.
        name = Names.unique_resource_name(self, max_length=ENDPOINT_NAME_MAX_LENGTH)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"{ENDPOINT_LOG_GROUP_PREFIX}{name}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker: pull the model server image, read the model, write logs",
        )
        policy = iam.Policy(
            self,
            "ExecutionPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    actions=[
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                    ],
                    resources=[ecr_repository_arn(params.model_server_image_uri)],
                ),
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[storage.bucket.arn_for_objects(params.model_data_key)],
                ),
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[storage.key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}
                    },
                ),
                iam.PolicyStatement(
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:DescribeLogStreams",
                        "logs:PutLogEvents",
                    ],
                    resources=[self.log_group.log_group_arn],
                ),
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={
                        "StringLike": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints*"}
                    },
                ),
            ],
        )
        for finding, reason in (
            (
                "Resource::*",
                "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no "
                "resource-level permissions; PutMetricData is limited to SageMaker's namespace.",
            ),
            (
                f"Resource::<{Stack.of(self).get_logical_id(_cfn(self.log_group))}.Arn>",
                "The streams of the endpoint's own log group: SageMaker names one per instance.",
            ),
        ):
            acknowledge(policy, f"AwsSolutions-IAM5[{finding}]", reason)
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=True,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=params.model_server_image_uri,
                model_data_url=f"s3://{storage.bucket.bucket_name}/{params.model_data_key}",
                environment={"SAGEMAKER_MODEL_SERVER_WORKERS": params.model_server_workers},
            ),
        )
        # SageMaker checks the role's access to the image and the model data on creation.
        self.model.node.add_dependency(policy)
        self.config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            kms_key_id=storage.key.key_arn,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=MODEL_VARIANT,
                    model_name=self.model.attr_model_name,
                    instance_type=params.endpoint_instance_type,
                    # Two or more (the parameter's minimum): SageMaker spreads the instances
                    # of a variant over Availability Zones.
                    initial_instance_count=params.endpoint_min_instances,
                    initial_variant_weight=1.0,
                )
            ],
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=name,
            endpoint_config_name=self.config.attr_endpoint_config_name,
            # An update (a new model) keeps the instance count auto scaling has reached.
            retain_all_variant_properties=True,
        )
        self.endpoint.node.add_dependency(self.log_group)
        self.endpoint_name = self.endpoint.attr_endpoint_name
        self.endpoint_arn = self.endpoint.ref

        target = appscaling.ScalableTarget(
            self,
            "Scaling",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint_name}/variant/{MODEL_VARIANT}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=params.endpoint_min_instances,
            max_capacity=params.endpoint_max_instances,
            role=iam.Role.from_role_arn(
                self,
                "ScalingRole",
                Stack.of(self).format_arn(
                    service="iam", region="", resource="role", resource_name=SCALING_ROLE
                ),
                mutable=False,
            ),
        )
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            target_value=params.endpoint_invocations_per_instance,
            scale_out_cooldown=Duration.minutes(1),
            scale_in_cooldown=Duration.minutes(5),
        )


def _cfn(log_group: logs.LogGroup) -> CfnElement:
    element = log_group.node.default_child
    assert isinstance(element, CfnElement)
    return element
