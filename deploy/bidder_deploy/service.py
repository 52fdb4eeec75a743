"""The bidder on ECS Fargate behind an internal Network Load Balancer, with auto scaling.

Tasks run in the private subnets of both Availability Zones, without public addresses.
The NLB passes TCP through to port 8000 and checks `/readyz`, so a task that is still
warming up or is draining on SIGTERM gets no new connections; the container's own health
check is `/healthz`. The task role may invoke this stack's endpoint and write recorded
traffic, nothing else.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Size
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from bidder_deploy import emf
from bidder_deploy.model_endpoint import ModelEndpoint
from bidder_deploy.nag import acknowledge
from bidder_deploy.network import Network
from bidder_deploy.parameters import (
    CONTAINER_PORT,
    LISTENER_PORT,
    LOG_RETENTION,
    RECORD_PREFIX,
    VPC_CIDR,
    Parameters,
    ecr_repository_arn,
)
from bidder_deploy.storage import BUCKET_ARN_EXPORT, StorageRefs

CONTAINER_NAME = "bidder"
# Writable by the image's unprivileged user, on the task's ephemeral storage.
RECORD_DIR = "/tmp/bidder-recorded"  # noqa: S108 (the task's own storage, no other user)
# The image is the bidder's (Python is there), so the check needs no curl in it.
HEALTH_CHECK = (
    "import urllib.request; "
    f"urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}/healthz', timeout=2)"
)


class Service(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        params: Parameters,
        network: Network,
        storage: StorageRefs,
        model: ModelEndpoint,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Bidder tasks: invoke the model endpoint, write recorded traffic",
        )
        task_policy = iam.Policy(
            self,
            "TaskPolicy",
            roles=[self.task_role],
            statements=[
                iam.PolicyStatement(
                    actions=["sagemaker:InvokeEndpoint"], resources=[model.endpoint_arn]
                ),
                iam.PolicyStatement(
                    actions=["s3:PutObject"],
                    resources=[storage.bucket.arn_for_objects(f"{RECORD_PREFIX}*")],
                ),
                # An SSE-KMS PutObject needs a data key from KMS, through S3 only.
                iam.PolicyStatement(
                    actions=["kms:GenerateDataKey"],
                    resources=[storage.key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}
                    },
                ),
            ],
        )
        acknowledge(
            task_policy,
            f"AwsSolutions-IAM5[Resource::{BUCKET_ARN_EXPORT}/{RECORD_PREFIX}*]",
            "The recorder names its objects at run time: s3:PutObject is limited to the "
            "recorded-traffic prefix.",
        )

        self.log_group = logs.LogGroup(
            self, "Logs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.RETAIN
        )
        task = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=params.task_cpu,
            memory_limit_mib=params.task_memory,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        task.add_container(
            CONTAINER_NAME,
            image=ecs.ContainerImage.from_registry(params.bidder_image_uri),
            essential=True,
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT)],
            environment={
                "BIDDER_HOST": "0.0.0.0",  # noqa: S104 (inside the task's own network namespace)
                "BIDDER_PORT": str(CONTAINER_PORT),
                "BIDDER_WORKERS": params.bidder_workers,
                "BIDDER_SCORER": "sagemaker",
                "BIDDER_SAGEMAKER_ENDPOINT_NAME": model.endpoint_name,
                "BIDDER_SAGEMAKER_REGION": Aws.REGION,
                # EMF documents on stdout: the awslogs driver carries them to CloudWatch.
                "BIDDER_EMF_SINK": "stdout",
                "BIDDER_EMF_NAMESPACE": emf.NAMESPACE,
                "BIDDER_EMF_SERVICE": emf.SERVICE,
                # Files are written here (the task's ephemeral storage), then uploaded.
                "BIDDER_RECORD_DIR": RECORD_DIR,
                "BIDDER_RECORD_S3_BUCKET": storage.bucket.bucket_name,
                "BIDDER_RECORD_S3_PREFIX": RECORD_PREFIX,
                "BIDDER_RECORD_S3_KMS_KEY_ID": storage.key.key_arn,
            },
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=CONTAINER_NAME,
                log_group=self.log_group,
                # A full log buffer drops lines rather than stalling the bid path.
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=Size.mebibytes(25),
            ),
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c", HEALTH_CHECK],
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(60),
            ),
            # Above BIDDER_SHUTDOWN_GRACE_SECONDS (25 s): in-flight requests finish first.
            stop_timeout=Duration.seconds(30),
        )
        execution_role = task.obtain_execution_role()
        execution_policy = iam.Policy(
            self,
            "ExecutionPolicy",
            roles=[execution_role],
            statements=[
                iam.PolicyStatement(
                    actions=[
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                    ],
                    resources=[ecr_repository_arn(params.bidder_image_uri)],
                ),
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            ],
        )
        acknowledge(
            execution_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions.",
        )
        acknowledge(
            task,
            "CloudFormation-Validate::E3047",
            "CPU and memory come from one row of the BidderTaskSizes mapping, each row a valid "
            "Fargate size; the validator pairs every CPU with every memory of the mapping.",
        )
        acknowledge(
            task,
            "AwsSolutions-ECS2",
            "None of these variables is a secret: they name the endpoint, region, bucket, "
            "prefix and key, and set the bidder's mode. Credentials come from the task role.",
        )

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=task,
            vpc_subnets=network.private_subnets,
            assign_public_ip=False,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            health_check_grace_period=Duration.seconds(60),
        )
        network.admit(self.service)
        scaling = self.service.auto_scale_task_count(
            min_capacity=params.bidder_min_tasks, max_capacity=params.bidder_max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=params.bidder_cpu_target,
            scale_out_cooldown=Duration.minutes(1),
            scale_in_cooldown=Duration.minutes(5),
        )

        self.nlb_security_group = ec2.SecurityGroup(
            self,
            "NlbSecurityGroup",
            vpc=network.vpc,
            description="Bid requests to the load balancer of the bidder",
            allow_all_outbound=False,
        )
        # Clients inside the VPC, or reaching it through PrivateLink, peering or a transit
        # gateway from the VPC's own range; widen this for other sources.
        self.nlb_security_group.add_ingress_rule(
            ec2.Peer.ipv4(VPC_CIDR), ec2.Port.tcp(LISTENER_PORT), "bid requests"
        )
        self.nlb = elbv2.NetworkLoadBalancer(
            self,
            "Nlb",
            vpc=network.vpc,
            internet_facing=False,
            vpc_subnets=network.private_subnets,
            security_groups=[self.nlb_security_group],
            cross_zone_enabled=True,
        )
        self.service.connections.allow_from(
            self.nlb_security_group, ec2.Port.tcp(CONTAINER_PORT), "from the load balancer"
        )
        listener = self.nlb.add_listener("Bids", port=LISTENER_PORT, protocol=elbv2.Protocol.TCP)
        self.target_group = listener.add_targets(
            "Bidder",
            port=CONTAINER_PORT,
            protocol=elbv2.Protocol.TCP,
            targets=[
                self.service.load_balancer_target(
                    container_name=CONTAINER_NAME, container_port=CONTAINER_PORT
                )
            ],
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.HTTP,
                path="/readyz",
                interval=Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
            deregistration_delay=Duration.seconds(30),
        )
        acknowledge(
            self.nlb,
            "AwsSolutions-ELB2",
            "An NLB writes access logs for TLS listeners only; this one passes TCP through. "
            "The bidder counts every request in its own metrics.",
        )
