"""The KMS key and the bucket of model artifacts (`models/`) and recorded traffic (`recorded/`).

Both are retained when the stack is deleted: they hold the models and the traffic, which
outlive any one deployment (`deploy/README.md` says how to remove them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bidder_deploy.nag import acknowledge
from bidder_deploy.parameters import MODEL_PREFIX, RECORD_PREFIX

# The storage stack exports these; the bidder's stack imports them by name. Fixed names keep
# the bidder's policies (and cdk-nag's findings about them) the same from one synthesis to
# the next.
BUCKET_NAME_EXPORT: Final = "BidderStorage-BucketName"
BUCKET_ARN_EXPORT: Final = "BidderStorage-BucketArn"
KEY_ARN_EXPORT: Final = "BidderStorage-KeyArn"


@dataclass(frozen=True)
class StorageRefs:
    """The key and the bucket, as the stacks that use them see them."""

    key: kms.IKey
    bucket: s3.IBucket

    @classmethod
    def imported(cls, scope: Construct) -> StorageRefs:
        """The storage stack's key and bucket, from its exports."""
        key = kms.Key.from_key_arn(scope, "ImportedKey", Fn.import_value(KEY_ARN_EXPORT))
        bucket = s3.Bucket.from_bucket_attributes(
            scope,
            "ImportedBucket",
            bucket_arn=Fn.import_value(BUCKET_ARN_EXPORT),
            bucket_name=Fn.import_value(BUCKET_NAME_EXPORT),
            encryption_key=key,
        )
        return cls(key=key, bucket=bucket)


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="Bidder: model artifacts, recorded traffic, endpoint volumes, alarms",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch publishes alarms to the topic encrypted with this key, under its own
        # service principal.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        # S3 server access logs cannot be delivered to a bucket encrypted with a KMS key.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(id="expire", expiration=Duration.days(365))],
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the access log bucket: logging it into itself would loop.",
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="bucket/",
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                # Recorded traffic is read in bulk, rarely and later: for training and replay.
                s3.LifecycleRule(
                    id="recorded-traffic",
                    prefix=RECORD_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        ),
                        s3.Transition(
                            storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                            transition_after=Duration.days(90),
                        ),
                        s3.Transition(
                            storage_class=s3.StorageClass.DEEP_ARCHIVE,
                            transition_after=Duration.days(365),
                        ),
                    ],
                    noncurrent_version_expiration=Duration.days(30),
                ),
                # Superseded models stay available for a rollback, then get cheaper.
                s3.LifecycleRule(
                    id="model-versions",
                    prefix=MODEL_PREFIX,
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                    noncurrent_version_expiration=Duration.days(365),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
        )
        for name, value, export, description in (
            ("BucketName", self.bucket.bucket_name, BUCKET_NAME_EXPORT, "Put models/ here"),
            ("BucketArn", self.bucket.bucket_arn, BUCKET_ARN_EXPORT, "The bucket's ARN"),
            ("KeyArn", self.key.key_arn, KEY_ARN_EXPORT, "The key of the bucket and topic"),
        ):
            CfnOutput(self, name, value=value, export_name=export, description=description)
        self.refs = StorageRefs(key=self.key, bucket=self.bucket)
