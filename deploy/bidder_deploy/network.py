"""The VPC: private subnets in two Availability Zones and the endpoints that replace a NAT.

Nothing in the VPC reaches the internet. The bidder's calls go to AWS services through VPC
endpoints: SageMaker Runtime, ECR (image pulls) and CloudWatch Logs through interface
endpoints with private DNS, so the default service hostnames resolve to private addresses;
S3 (image layers, recorded traffic) through a gateway endpoint, which costs nothing.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from bidder_deploy.parameters import LOG_RETENTION, MAX_AZS, VPC_CIDR


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=MAX_AZS,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        self.private_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        # Rejected connections only: at millions of requests a second, accepted flows would
        # cost more in logs than everything else here.
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        # Closed: each endpoint admits only the security groups `admit` names, not the VPC.
        self.interface_endpoints = {
            name: self.vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                subnets=self.private_subnets,
                open=False,
            )
            for name, service in (
                ("EcrApi", ec2.InterfaceVpcEndpointAwsService.ECR),
                ("EcrDocker", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER),
                ("Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
                ("SageMakerRuntime", ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME),
            )
        }
        self.sagemaker_runtime = self.interface_endpoints["SageMakerRuntime"]

    def admit(self, client: ec2.IConnectable) -> None:
        """Let `client` reach every interface endpoint (HTTPS), and nothing else in."""
        for endpoint in self.interface_endpoints.values():
            endpoint.connections.allow_default_port_from(client, "HTTPS to AWS services")

    def allow_invoke_only(self, endpoint_arn: str) -> None:
        """Limit the SageMaker Runtime interface endpoint to invoking one model endpoint:
        whatever credentials a caller in the VPC holds, nothing else passes through it."""
        self.sagemaker_runtime.add_to_policy(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()],
                actions=["sagemaker:InvokeEndpoint"],
                resources=[endpoint_arn],
            )
        )
