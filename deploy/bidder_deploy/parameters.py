"""Every value a deployment chooses, in one place.

Deploy-time values are CloudFormation parameters (`cdk deploy --parameters Name=value`), so
the synthesized template stays environment-agnostic: no account, region or lookup is
needed to write it, and one template serves every environment. The constants below are
structural choices: changing one changes the template's shape, so it is a code change.
`deploy/README.md` documents each parameter with its default (a test holds the two
together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import Aws, CfnMapping, CfnParameter, Fn, Token
from aws_cdk import aws_logs as logs
from constructs import Construct

# --- structural constants ---
VPC_CIDR: Final = "10.64.0.0/16"
# An environment-agnostic stack cannot look the region's zones up: CDK spreads it over the
# first two of `Fn::GetAZs`, which is what the endpoint and the service need.
MAX_AZS: Final = 2
CONTAINER_PORT: Final = 8000
LISTENER_PORT: Final = 80
MODEL_VARIANT: Final = "AllTraffic"
MODEL_PREFIX: Final = "models/"
RECORD_PREFIX: Final = "recorded/"
LOG_RETENTION: Final = logs.RetentionDays.ONE_MONTH
# Rates (percent of bid requests, or of model calls) above which the alarms fire.
DEADLINE_MISS_RATE_PERCENT: Final = 1.0
MODEL_CALL_FAILURE_RATE_PERCENT: Final = 1.0
ERROR_RATE_PERCENT: Final = 0.1
SHED_RATE_PERCENT: Final = 1.0

# Fargate task sizes offered, by vCPUs: CPU units, memory (MiB) and bidder workers (one per
# vCPU: each worker is one single-threaded event loop).
TASK_SIZES: Final = {
    "1": {"Cpu": "1024", "Memory": "2048", "Workers": "1"},
    "2": {"Cpu": "2048", "Memory": "4096", "Workers": "2"},
    "4": {"Cpu": "4096", "Memory": "8192", "Workers": "4"},
    "8": {"Cpu": "8192", "Memory": "16384", "Workers": "8"},
    "16": {"Cpu": "16384", "Memory": "32768", "Workers": "16"},
}

# A private ECR image: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY[:TAG|@sha256:DIGEST].
# The stack derives the repository's ARN from it (`ecr_repository_arn`), so pull rights name
# that repository only.
ECR_IMAGE_PATTERN: Final = (
    r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9][a-z0-9._/-]*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})?$"
)


@dataclass(frozen=True)
class Parameters:
    """The deploy-time values, as tokens that CloudFormation resolves at deployment."""

    bidder_image_uri: str
    model_server_image_uri: str
    model_data_key: str
    endpoint_instance_type: str
    endpoint_min_instances: float
    endpoint_max_instances: float
    endpoint_invocations_per_instance: float
    model_server_workers: str
    task_cpu: float
    task_memory: float
    bidder_workers: str
    bidder_min_tasks: float
    bidder_max_tasks: float
    bidder_cpu_target: float
    latency_budget_ms: float


def define_parameters(scope: Construct) -> Parameters:
    """Declare the stack's CloudFormation parameters and return their values."""

    def string(
        name: str,
        description: str,
        *,
        default: str | None = None,
        allowed_pattern: str | None = None,
        allowed_values: list[str] | None = None,
        constraint_description: str | None = None,
    ) -> str:
        parameter = CfnParameter(
            scope,
            name,
            type="String",
            description=description,
            default=default,
            allowed_pattern=allowed_pattern,
            allowed_values=allowed_values,
            constraint_description=constraint_description,
        )
        return parameter.value_as_string

    def number(
        name: str,
        description: str,
        default: float,
        *,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> float:
        parameter = CfnParameter(
            scope,
            name,
            type="Number",
            description=description,
            default=default,
            min_value=min_value,
            max_value=max_value,
        )
        return parameter.value_as_number

    bidder_image_uri = string(
        "BidderImageUri",
        "ECR image of the bidder (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG).",
        allowed_pattern=ECR_IMAGE_PATTERN,
        constraint_description="a private ECR image URI with a tag or digest",
    )
    model_server_image_uri = string(
        "ModelServerImageUri",
        "ECR image of the model server (docker/model-server/Dockerfile).",
        allowed_pattern=ECR_IMAGE_PATTERN,
        constraint_description="a private ECR image URI with a tag or digest",
    )
    model_data_key = string(
        "ModelDataKey",
        "Key of model.tar.gz in the artifact bucket; it must start with models/.",
        default="models/bidder/model.tar.gz",
        allowed_pattern=r"^models/[A-Za-z0-9!_.*'()/-]+\.tar\.gz$",
        constraint_description="a key under models/ ending in .tar.gz",
    )
    endpoint_instance_type = string(
        "EndpointInstanceType",
        "SageMaker instance type of the model endpoint.",
        default="ml.c5.large",
        allowed_pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$",
    )
    endpoint_min_instances = number(
        "EndpointMinInstances",
        "Instances the endpoint starts with and never goes below (two or more: one per AZ).",
        2,
        min_value=2,
    )
    endpoint_max_instances = number(
        "EndpointMaxInstances", "Most instances auto scaling gives the endpoint.", 6, min_value=2
    )
    endpoint_invocations = number(
        "EndpointInvocationsPerInstance",
        "Auto scaling target: invocations per instance per minute.",
        60_000,
        min_value=1,
    )
    model_server_workers = string(
        "ModelServerWorkers",
        "Model server processes per endpoint instance (its vCPUs).",
        default="2",
        allowed_pattern=r"^[1-9][0-9]{0,2}$",
    )
    task_vcpus = string(
        "BidderTaskVcpus",
        "vCPUs of one bidder task (memory 2 GiB per vCPU, one bidder worker per vCPU).",
        default="2",
        allowed_values=list(TASK_SIZES),
    )
    sizes = CfnMapping(scope, "BidderTaskSizes", mapping=TASK_SIZES)
    bidder_min_tasks = number(
        "BidderMinTasks", "Fewest bidder tasks (two or more: one per AZ).", 2, min_value=2
    )
    bidder_max_tasks = number(
        "BidderMaxTasks", "Most bidder tasks auto scaling runs.", 20, min_value=2
    )
    bidder_cpu_target = number(
        "BidderCpuTargetPercent",
        "Auto scaling target: average CPU utilisation of the bidder tasks.",
        60,
        min_value=10,
        max_value=90,
    )
    latency_budget_ms = number(
        "LatencyBudgetMs",
        "The alarm fires when the bidder's p99 request latency stays above this.",
        50,
        min_value=1,
    )
    return Parameters(
        bidder_image_uri=bidder_image_uri,
        model_server_image_uri=model_server_image_uri,
        model_data_key=model_data_key,
        endpoint_instance_type=endpoint_instance_type,
        endpoint_min_instances=endpoint_min_instances,
        endpoint_max_instances=endpoint_max_instances,
        endpoint_invocations_per_instance=endpoint_invocations,
        model_server_workers=model_server_workers,
        task_cpu=Token.as_number(sizes.find_in_map(task_vcpus, "Cpu")),
        task_memory=Token.as_number(sizes.find_in_map(task_vcpus, "Memory")),
        bidder_workers=sizes.find_in_map(task_vcpus, "Workers"),
        bidder_min_tasks=bidder_min_tasks,
        bidder_max_tasks=bidder_max_tasks,
        bidder_cpu_target=bidder_cpu_target,
        latency_budget_ms=latency_budget_ms,
    )


def ecr_repository_arn(image_uri: str) -> str:
    """The ARN of the repository an image URI (matching `ECR_IMAGE_PATTERN`) names, built
    with CloudFormation functions because the URI is only known at deployment."""
    account = Fn.select(0, Fn.split(".", image_uri))
    region = Fn.select(3, Fn.split(".", image_uri))
    # "REPO:TAG" or "REPO@sha256:DIGEST" after the host; the repository is what precedes
    # the first ":" and then the first "@".
    path = Fn.select(1, Fn.split(".amazonaws.com/", image_uri))
    repository = Fn.select(0, Fn.split("@", Fn.select(0, Fn.split(":", path))))
    return Fn.join(
        "", ["arn:", Aws.PARTITION, ":ecr:", region, ":", account, ":repository/", repository]
    )
