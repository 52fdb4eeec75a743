"""The resources of the stack, and the least privilege of every policy in it."""

from __future__ import annotations

import re
from typing import Any

from aws_cdk.assertions import Annotations, Match

from bidder.settings import Settings
from bidder.telemetry.emf.reporter import COUNTS, DIMENSION_SETS
from bidder_deploy import emf
from bidder_deploy.parameters import RECORD_PREFIX
from bidder_deploy.storage import BUCKET_ARN_EXPORT, BUCKET_NAME_EXPORT, KEY_ARN_EXPORT

from .conftest import Synthesized, as_list, policy_statements, strings_in

REGION = {"Ref": "AWS::Region"}


def ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def arn(logical_id: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def imported(export: str) -> dict[str, str]:
    return {"Fn::ImportValue": export}


BUCKET_NAME = imported(BUCKET_NAME_EXPORT)
BUCKET_ARN = imported(BUCKET_ARN_EXPORT)
KEY_ARN = imported(KEY_ARN_EXPORT)


def the_bucket(synthesized: Synthesized) -> str:
    """The artifact and traffic bucket: the one encrypted with the stack's key."""
    (bucket,) = (
        logical_id
        for logical_id, resource in synthesized.of_type("AWS::S3::Bucket").items()
        if "KMSMasterKeyID" in str(resource["Properties"]["BucketEncryption"])
    )
    return bucket


def all_statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    """Every statement of every identity, resource and endpoint policy in the template."""
    statements = []
    for resource in synthesized.resources.values():
        properties = resource.get("Properties", {})
        for name in ("PolicyDocument", "KeyPolicy"):
            if name in properties:
                statements.extend(policy_statements(properties[name]))
        for inline in properties.get("Policies", []):
            statements.extend(policy_statements(inline["PolicyDocument"]))
    return statements


# --- checks ---


def test_the_stack_synthesizes_without_a_finding_left_unacknowledged(
    synthesized: Synthesized,
) -> None:
    for plugin in synthesized.report["pluginReports"]:
        assert plugin["conclusion"] == "success", plugin["pluginName"]
        assert plugin["violations"] == [], plugin["pluginName"]
        for finding in plugin.get("suppressedViolations", []):
            assert finding["reason"].strip(), finding["ruleName"]
    annotations = Annotations.from_stack(synthesized.stack)
    assert annotations.find_error("*", Match.any_value()) == []
    assert annotations.find_warning("*", Match.any_value()) == []


# --- network ---


def test_the_vpc_has_private_subnets_in_two_availability_zones_and_no_way_out(
    synthesized: Synthesized,
) -> None:
    subnets = synthesized.of_type("AWS::EC2::Subnet").values()
    zones = [subnet["Properties"]["AvailabilityZone"] for subnet in subnets]
    assert sorted(zone["Fn::Select"][0] for zone in zones) == [0, 1]
    assert all(zone["Fn::Select"][1] == {"Fn::GetAZs": ""} for zone in zones)
    assert not any(subnet["Properties"]["MapPublicIpOnLaunch"] for subnet in subnets)
    synthesized.template.resource_count_is("AWS::EC2::InternetGateway", 0)
    synthesized.template.resource_count_is("AWS::EC2::NatGateway", 0)


def test_sagemaker_runtime_is_reached_through_an_interface_endpoint_that_invokes_ours_only(
    synthesized: Synthesized,
) -> None:
    endpoint, _ = synthesized.one("AWS::SageMaker::Endpoint")
    (vpce,) = (
        resource["Properties"]
        for resource in synthesized.of_type("AWS::EC2::VPCEndpoint").values()
        if "sagemaker.runtime" in "".join(strings_in(resource["Properties"]["ServiceName"]))
    )
    assert vpce["ServiceName"] == {
        "Fn::Join": ["", ["com.amazonaws.", REGION, ".sagemaker.runtime"]]
    }
    assert vpce["VpcEndpointType"] == "Interface"
    assert vpce["PrivateDnsEnabled"] is True
    assert len(vpce["SubnetIds"]) == 2
    assert vpce["PolicyDocument"] == {
        "Statement": [
            {
                "Action": "sagemaker:InvokeEndpoint",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Resource": ref(endpoint),
            }
        ],
        "Version": "2012-10-17",
    }


def test_s3_is_reached_through_a_gateway_endpoint(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Gateway",
            "ServiceName": {"Fn::Join": ["", ["com.amazonaws.", REGION, ".s3"]]},
        },
    )


def test_interface_endpoints_admit_the_bidder_tasks_only(synthesized: Synthesized) -> None:
    service = synthesized.one("AWS::ECS::Service")[1]["Properties"]
    (task_group,) = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    interface_groups = [
        group["Fn::GetAtt"][0]
        for resource in synthesized.of_type("AWS::EC2::VPCEndpoint").values()
        if resource["Properties"]["VpcEndpointType"] == "Interface"
        for group in resource["Properties"]["SecurityGroupIds"]
    ]
    assert len(interface_groups) == 4  # ECR API, ECR Docker, CloudWatch Logs, SageMaker Runtime
    for group in interface_groups:
        assert "SecurityGroupIngress" not in synthesized.resources[group]["Properties"]
        rules = [
            resource["Properties"]
            for resource in synthesized.of_type("AWS::EC2::SecurityGroupIngress").values()
            if resource["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
        ]
        assert [(rule["SourceSecurityGroupId"], rule["FromPort"]) for rule in rules] == [
            (task_group, 443)
        ]


# --- storage ---


def test_the_bucket_is_versioned_private_encrypted_with_the_key_and_retained(
    synthesized: Synthesized,
) -> None:
    key, key_resource = synthesized.one("AWS::KMS::Key")
    assert key_resource["Properties"]["EnableKeyRotation"] is True
    assert key_resource["DeletionPolicy"] == "Retain"
    bucket = synthesized.resources[the_bucket(synthesized)]
    properties = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {
        "KMSMasterKeyID": arn(key),
        "SSEAlgorithm": "aws:kms",
    }


def test_the_storage_stack_exports_what_the_bidder_stack_imports(
    synthesized: Synthesized,
) -> None:
    key = synthesized.one("AWS::KMS::Key")[0]
    bucket = the_bucket(synthesized)
    assert synthesized.exports == {
        BUCKET_NAME_EXPORT: ref(bucket),
        BUCKET_ARN_EXPORT: arn(bucket),
        KEY_ARN_EXPORT: arn(key),
    }


def test_recorded_traffic_moves_to_cheaper_storage_classes(synthesized: Synthesized) -> None:
    properties = synthesized.resources[the_bucket(synthesized)]["Properties"]
    rules = {rule["Id"]: rule for rule in properties["LifecycleConfiguration"]["Rules"]}
    recorded = rules["recorded-traffic"]
    assert recorded["Prefix"] == RECORD_PREFIX
    assert [(t["StorageClass"], t["TransitionInDays"]) for t in recorded["Transitions"]] == [
        ("STANDARD_IA", 30),
        ("GLACIER_IR", 90),
        ("DEEP_ARCHIVE", 365),
    ]
    assert rules["model-versions"]["NoncurrentVersionTransitions"][0]["StorageClass"] == (
        "STANDARD_IA"
    )
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }


def test_every_bucket_refuses_requests_without_tls(synthesized: Synthesized) -> None:
    buckets = synthesized.of_type("AWS::S3::Bucket")
    policies = synthesized.of_type("AWS::S3::BucketPolicy").values()
    assert len(buckets) == len(policies) == 2  # the bucket and its access-log bucket
    for policy in policies:
        bucket = policy["Properties"]["Bucket"]["Ref"]
        assert {
            "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": [arn(bucket), {"Fn::Join": ["", [arn(bucket), "/*"]]}],
        } in list(policy_statements(policy["Properties"]["PolicyDocument"]))


def test_log_groups_expire_their_events_and_outlive_the_stack(synthesized: Synthesized) -> None:
    groups = synthesized.of_type("AWS::Logs::LogGroup").values()
    assert len(groups) == 3  # the bidder's, the model endpoint's, the VPC's rejected flows
    for group in groups:
        assert group["Properties"]["RetentionInDays"] == 30
        assert group["DeletionPolicy"] == "Retain"


# --- the model endpoint ---


def test_the_model_serves_the_model_server_image_with_the_tarball_from_the_bucket(
    synthesized: Synthesized,
) -> None:
    model = synthesized.one("AWS::SageMaker::Model")[1]["Properties"]
    container = model["PrimaryContainer"]
    assert container["Image"] == ref("ModelServerImageUri")
    assert container["ModelDataUrl"] == {
        "Fn::Join": ["", ["s3://", BUCKET_NAME, "/", ref("ModelDataKey")]]
    }
    assert model["EnableNetworkIsolation"] is True


def test_the_endpoint_starts_with_two_or_more_instances_of_the_chosen_type(
    synthesized: Synthesized,
) -> None:
    config = synthesized.one("AWS::SageMaker::EndpointConfig")[1]["Properties"]
    (variant,) = config["ProductionVariants"]
    assert variant["InstanceType"] == ref("EndpointInstanceType")
    assert variant["InitialInstanceCount"] == ref("EndpointMinInstances")
    minimum = synthesized.parameters["EndpointMinInstances"]
    assert minimum["MinValue"] >= 2
    assert minimum["Default"] >= 2
    assert config["KmsKeyId"] == KEY_ARN


def target_tracking(synthesized: Synthesized, namespace: str) -> tuple[dict[str, Any], Any]:
    """The scalable target of `namespace` and its one target-tracking configuration."""
    (target_id, target) = next(
        (logical_id, resource["Properties"])
        for logical_id, resource in synthesized.of_type(
            "AWS::ApplicationAutoScaling::ScalableTarget"
        ).items()
        if resource["Properties"]["ServiceNamespace"] == namespace
    )
    (policy,) = (
        resource["Properties"]
        for resource in synthesized.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if resource["Properties"]["ScalingTargetId"] == ref(target_id)
    )
    assert policy["PolicyType"] == "TargetTrackingScaling"
    return target, policy["TargetTrackingScalingPolicyConfiguration"]


def test_the_endpoint_logs_to_its_own_group_which_alone_its_role_may_write(
    synthesized: Synthesized,
) -> None:
    endpoint = synthesized.one("AWS::SageMaker::Endpoint")[1]
    name = endpoint["Properties"]["EndpointName"]
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name)
    (group_id,) = [
        logical_id
        for logical_id, group in synthesized.of_type("AWS::Logs::LogGroup").items()
        if group["Properties"].get("LogGroupName") == f"/aws/sagemaker/Endpoints/{name}"
    ]
    assert group_id in endpoint["DependsOn"], "the group exists before SageMaker logs"
    role_id = synthesized.one("AWS::SageMaker::Model")[1]["Properties"]["ExecutionRoleArn"]
    role_id = role_id["Fn::GetAtt"][0]
    log_statements = [
        statement
        for policy in synthesized.of_type("AWS::IAM::Policy").values()
        if ref(role_id) in policy["Properties"]["Roles"]
        for statement in policy_statements(policy["Properties"]["PolicyDocument"])
        if any(str(action).startswith("logs:") for action in as_list(statement["Action"]))
    ]
    assert [statement["Resource"] for statement in log_statements] == [
        {"Fn::GetAtt": [group_id, "Arn"]}
    ]


def test_the_endpoint_scales_on_invocations_per_instance(synthesized: Synthesized) -> None:
    endpoint = synthesized.one("AWS::SageMaker::Endpoint")[0]
    target, tracking = target_tracking(synthesized, "sagemaker")
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert target["ResourceId"] == {
        "Fn::Join": [
            "",
            ["endpoint/", {"Fn::GetAtt": [endpoint, "EndpointName"]}, "/variant/AllTraffic"],
        ]
    }
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        ref("EndpointMinInstances"),
        ref("EndpointMaxInstances"),
    )
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == ref("EndpointInvocationsPerInstance")


# --- the bidder's service ---


def container(synthesized: Synthesized) -> dict[str, Any]:
    task = synthesized.one("AWS::ECS::TaskDefinition")[1]["Properties"]
    (definition,) = task["ContainerDefinitions"]
    return definition  # type: ignore[no-any-return]


def test_the_task_role_may_invoke_our_endpoint_and_write_recorded_traffic_only(
    synthesized: Synthesized,
) -> None:
    endpoint = synthesized.one("AWS::SageMaker::Endpoint")[0]
    task = synthesized.one("AWS::ECS::TaskDefinition")[1]["Properties"]
    role = task["TaskRoleArn"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in synthesized.resources[role]["Properties"]
    assert "Policies" not in synthesized.resources[role]["Properties"]
    (document,) = (
        resource["Properties"]["PolicyDocument"]
        for resource in synthesized.of_type("AWS::IAM::Policy").values()
        if ref(role) in resource["Properties"]["Roles"]
    )
    assert document["Statement"] == [
        {"Action": "sagemaker:InvokeEndpoint", "Effect": "Allow", "Resource": ref(endpoint)},
        {
            "Action": "s3:PutObject",
            "Effect": "Allow",
            "Resource": {"Fn::Join": ["", [BUCKET_ARN, f"/{RECORD_PREFIX}*"]]},
        },
        {
            "Action": "kms:GenerateDataKey",
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": {"Fn::Join": ["", ["s3.", REGION, ".amazonaws.com"]]}
                }
            },
            "Effect": "Allow",
            "Resource": KEY_ARN,
        },
    ]


def test_no_policy_lets_anyone_invoke_any_endpoint(synthesized: Synthesized) -> None:
    invoking = [
        statement
        for statement in all_statements(synthesized)
        if statement["Effect"] == "Allow"
        and any(
            action in ("*", "sagemaker:*", "sagemaker:InvokeEndpoint")
            for action in as_list(statement["Action"])
        )
    ]
    endpoint = synthesized.one("AWS::SageMaker::Endpoint")[0]
    assert len(invoking) == 2  # the task role's, the interface endpoint's
    assert all(as_list(statement["Resource"]) == [ref(endpoint)] for statement in invoking)


def test_the_bidder_is_configured_to_score_through_the_endpoint(
    synthesized: Synthesized,
) -> None:
    endpoint = synthesized.one("AWS::SageMaker::Endpoint")[0]
    environment = {item["Name"]: item["Value"] for item in container(synthesized)["Environment"]}
    assert environment["BIDDER_SCORER"] == "sagemaker"
    assert environment["BIDDER_SAGEMAKER_ENDPOINT_NAME"] == {
        "Fn::GetAtt": [endpoint, "EndpointName"]
    }
    assert environment["BIDDER_HOST"] == "0.0.0.0"
    assert environment["BIDDER_PORT"] == "8000"
    assert environment["BIDDER_EMF_SINK"] == "stdout"
    assert environment["BIDDER_RECORD_S3_BUCKET"] == BUCKET_NAME
    assert environment["BIDDER_RECORD_S3_PREFIX"] == RECORD_PREFIX
    assert environment["BIDDER_RECORD_S3_KMS_KEY_ID"] == KEY_ARN
    # The bidder refuses no unknown variable, so a misspelt one would be silently ignored.
    fields = {f"BIDDER_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) <= fields


def test_the_container_checks_its_health_and_logs_without_blocking(
    synthesized: Synthesized,
) -> None:
    definition = container(synthesized)
    assert definition["PortMappings"] == [{"ContainerPort": 8000, "Protocol": "tcp"}]
    command = definition["HealthCheck"]["Command"]
    assert command[0] == "CMD"
    assert "http://127.0.0.1:8000/healthz" in " ".join(command)
    logging = definition["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    assert logging["Options"]["mode"] == "non-blocking"
    group = logging["Options"]["awslogs-group"]["Ref"]
    assert synthesized.resources[group]["Type"] == "AWS::Logs::LogGroup"


def test_the_tasks_run_in_the_private_subnets_behind_an_internal_nlb(
    synthesized: Synthesized,
) -> None:
    subnets = [ref(logical_id) for logical_id in synthesized.of_type("AWS::EC2::Subnet")]
    service = synthesized.one("AWS::ECS::Service")[1]["Properties"]
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert sorted(map(str, network["Subnets"])) == sorted(map(str, subnets))
    assert service["LaunchType"] == "FARGATE"
    synthesized.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {"Type": "network", "Scheme": "internal", "Subnets": Match.array_with(subnets)},
    )
    synthesized.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "Port": 8000,
            "Protocol": "TCP",
            "TargetType": "ip",
            "HealthCheckPath": "/readyz",
            "HealthCheckProtocol": "HTTP",
        },
    )


def test_the_service_scales_on_cpu(synthesized: Synthesized) -> None:
    target, tracking = target_tracking(synthesized, "ecs")
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        ref("BidderMinTasks"),
        ref("BidderMaxTasks"),
    )
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
    }
    assert tracking["TargetValue"] == ref("BidderCpuTargetPercent")


# --- dashboard and alarms ---


def alarm_metrics(synthesized: Synthesized) -> list[dict[str, Any]]:
    """The metric of every alarm, including those inside metric math."""
    metrics = []
    for alarm in synthesized.of_type("AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if "MetricName" in properties:
            metrics.append(properties)
        for query in properties.get("Metrics", []):
            if "MetricStat" in query:
                metrics.append(query["MetricStat"]["Metric"])
    return metrics


def test_the_stack_reads_the_metrics_the_bidder_writes(synthesized: Synthesized) -> None:
    assert Settings.model_fields["emf_namespace"].default == emf.NAMESPACE
    assert Settings.model_fields["emf_service"].default == emf.SERVICE
    assert (emf.SERVICE_DIMENSION,) in DIMENSION_SETS
    counted = {count.name for count in COUNTS}
    distributions = {emf.REQUEST_LATENCY, emf.MODEL_CALL_LATENCY, emf.BATCH_SIZE}
    bidder_metrics = [
        metric for metric in alarm_metrics(synthesized) if metric["Namespace"] == emf.NAMESPACE
    ]
    assert {metric["MetricName"] for metric in bidder_metrics} == {
        emf.REQUESTS,
        emf.REQUEST_LATENCY,
        emf.DEADLINE_MISSES,
        emf.SHED,
        emf.ERRORS,
        emf.MODEL_CALL_FAILURES,
        emf.MODEL_CALL_LATENCY,
    }
    for metric in bidder_metrics:
        assert metric["MetricName"] in counted | distributions
        assert metric["Dimensions"] == [{"Name": "Service", "Value": "bidder"}]


def test_alarms_watch_the_endpoint_and_notify_the_topic(synthesized: Synthesized) -> None:
    topic = synthesized.one("AWS::SNS::Topic")[0]
    alarms = synthesized.of_type("AWS::CloudWatch::Alarm").values()
    assert len(alarms) == 7
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [ref(topic)]
        assert alarm["Properties"]["OKActions"] == [ref(topic)]
    endpoint = synthesized.one("AWS::SageMaker::Endpoint")[0]
    (errors,) = (m for m in alarm_metrics(synthesized) if m["Namespace"] == "AWS/SageMaker")
    assert errors["MetricName"] == "Invocation5XXErrors"
    assert {"Name": "EndpointName", "Value": {"Fn::GetAtt": [endpoint, "EndpointName"]}} in (
        errors["Dimensions"]
    )


def test_the_dashboard_shows_the_bidder_and_sagemaker_metrics(synthesized: Synthesized) -> None:
    body = "".join(strings_in(synthesized.one("AWS::CloudWatch::Dashboard")[1]["Properties"]))
    for name in (
        "ModelLatency",
        "OverheadLatency",
        "Invocation5XXErrors",
        "InvocationsPerInstance",
        emf.REQUESTS,
        emf.BIDS,
        emf.REQUEST_LATENCY,
        emf.RECORDER_DROPPED,
    ):
        assert f'"{name}"' in body, name
