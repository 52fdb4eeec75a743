"""The dashboard and the alarms: the bidder's EMF metrics beside SageMaker's own.

Alarms notify an SNS topic (encrypted with the stack's key); subscribe to it to be told.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from bidder_deploy import emf
from bidder_deploy.model_endpoint import ModelEndpoint
from bidder_deploy.parameters import (
    DEADLINE_MISS_RATE_PERCENT,
    MODEL_CALL_FAILURE_RATE_PERCENT,
    MODEL_VARIANT,
    SHED_RATE_PERCENT,
    Parameters,
)
from bidder_deploy.service import Service
from bidder_deploy.storage import Storage

MINUTE = Duration.minutes(1)


def bidder_metric(name: str, statistic: str = "Sum", label: str | None = None) -> cw.Metric:
    return cw.Metric(
        namespace=emf.NAMESPACE, metric_name=name, statistic=statistic, period=MINUTE, label=label
    )


def rate_percent(part: str, whole: str, label: str) -> cw.MathExpression:
    """`part` as a percentage of `whole`, 0 when there was nothing to divide. Each metric's
    id is its lower-cased name, so expressions sharing a graph share ids consistently."""
    p, w = part.lower(), whole.lower()
    return cw.MathExpression(
        expression=f"IF({w} > 0, 100 * {p} / {w}, 0)",
        using_metrics={p: bidder_metric(part), w: bidder_metric(whole)},
        label=label,
        period=MINUTE,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        params: Parameters,
        storage: Storage,
        model: ModelEndpoint,
        service: Service,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", master_key=storage.key, enforce_ssl=True)
        # CloudWatch publishes to the encrypted topic under its own service principal.
        storage.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )

        def sagemaker_metric(name: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"EndpointName": model.endpoint_name, "VariantName": MODEL_VARIANT},
                statistic=statistic,
                period=MINUTE,
            )

        latency_p99 = bidder_metric(emf.REQUEST_LATENCY, "p99", "p99 request latency (ms)")
        requests = bidder_metric(emf.REQUESTS, label="bid requests / min")
        deadline_rate = rate_percent(emf.DEADLINE_MISSES, emf.REQUESTS, "deadline misses %")
        failure_rate = rate_percent(emf.MODEL_CALL_FAILURES, emf.MODEL_CALLS, "model failures %")
        shed_rate = rate_percent(emf.SHED, emf.REQUESTS, "shed %")
        endpoint_5xx = sagemaker_metric("Invocation5XXErrors", "Sum")

        self.alarms = {
            "LatencyP99": cw.Alarm(
                self,
                "LatencyP99",
                alarm_description="The bidder's p99 request latency is above LatencyBudgetMs.",
                metric=latency_p99,
                threshold=params.latency_budget_ms,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            "DeadlineMisses": cw.Alarm(
                self,
                "DeadlineMissRate",
                alarm_description="Bid requests answered with a no-bid because time ran out.",
                metric=deadline_rate,
                threshold=DEADLINE_MISS_RATE_PERCENT,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            "ModelCallFailures": cw.Alarm(
                self,
                "ModelCallFailureRate",
                alarm_description="Model calls that failed (errors, timeouts, open breaker).",
                metric=failure_rate,
                threshold=MODEL_CALL_FAILURE_RATE_PERCENT,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            "Shed": cw.Alarm(
                self,
                "ShedRate",
                alarm_description="Bid requests refused by load shedding: add capacity.",
                metric=shed_rate,
                threshold=SHED_RATE_PERCENT,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            "NoTraffic": cw.Alarm(
                self,
                "NoTraffic",
                alarm_description="No bid request for 5 minutes: exchanges cannot reach us.",
                metric=bidder_metric(emf.REQUESTS).with_(period=Duration.minutes(5)),
                threshold=1,
                comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.BREACHING,
            ),
            "Endpoint5XX": cw.Alarm(
                self,
                "Endpoint5XX",
                alarm_description="The SageMaker endpoint answers invocations with 5XX errors.",
                metric=endpoint_5xx,
                threshold=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        }
        action = cw_actions.SnsAction(self.topic)
        for alarm in self.alarms.values():
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

        budget = cw.HorizontalAnnotation(value=params.latency_budget_ms, label="budget")
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-bidder",
            default_interval=Duration.hours(3),
            widgets=[
                [
                    cw.GraphWidget(
                        title="Bid requests",
                        left=[requests, bidder_metric(emf.BIDS, label="bids / min")],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Request latency (ms)",
                        left=[
                            bidder_metric(emf.REQUEST_LATENCY, "p50", "p50"),
                            latency_p99,
                            bidder_metric(emf.REQUEST_LATENCY, "p99.9", "p99.9"),
                        ],
                        left_annotations=[budget],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Rates (%)",
                        left=[deadline_rate, failure_rate, shed_rate],
                        width=8,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Endpoint latency (µs)",
                        left=[
                            sagemaker_metric("ModelLatency", "p99"),
                            sagemaker_metric("OverheadLatency", "p99"),
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Endpoint load",
                        left=[
                            sagemaker_metric("InvocationsPerInstance", "Sum"),
                            bidder_metric(emf.MODEL_CALLS, label="model calls / min"),
                        ],
                        right=[endpoint_5xx],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Bidder tasks",
                        left=[
                            service.service.metric_cpu_utilization(period=MINUTE),
                            service.service.metric_memory_utilization(period=MINUTE),
                        ],
                        width=8,
                    ),
                ],
                [cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24)],
            ],
        )
