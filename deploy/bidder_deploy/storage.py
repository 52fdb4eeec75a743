"""The KMS key and the bucket of model artifacts (`models/`) and recorded traffic (`recorded/`).

Both are retained when the stack is deleted: they hold the models and the traffic, which
outlive any one deployment (`deploy/README.md` says how to remove them).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bidder_deploy.nag import acknowledge
from bidder_deploy.parameters import MODEL_PREFIX, RECORD_PREFIX


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
