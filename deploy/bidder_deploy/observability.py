"""The dashboard and the alarms: the bidder's EMF metrics beside SageMaker's own.

Alarms notify an SNS topic (encrypted with the stack's key); subscribe to it to be told.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from bidder_deploy import emf
from bidder_deploy.model_endpoint import ModelEndpoint
from bidder_deploy.parameters import (
    DEADLINE_MISS_RATE_PERCENT,
    ERROR_RATE_PERCENT,
    MODEL_CALL_FAILURE_RATE_PERCENT,
    MODEL_VARIANT,
    SHED_RATE_PERCENT,
    Parameters,
)
from bidder_deploy.service import Service
from bidder_deploy.storage import StorageRefs

MINUTE = Duration.minutes(1)


def bidder_metric(name: str, statistic: str = "Sum", label: str | None = None) -> cw.Metric:
    """One of the bidder's EMF metrics, over the whole service (the `[Service]` set)."""
    return cw.Metric(
        namespace=emf.NAMESPACE,
        metric_name=name,
        dimensions_map={emf.SERVICE_DIMENSION: emf.SERVICE},
        statistic=statistic,
        period=MINUTE,
        label=label,
    )


def model_calls() -> cw.Metric:
    """Model calls per period: every call that took time is in the latency distribution."""
    return bidder_metric(emf.MODEL_CALL_LATENCY, "SampleCount", "model calls / min")


def rate_percent(
    part: tuple[str, cw.Metric], whole: tuple[str, cw.Metric], label: str
) -> cw.MathExpression:
    """`part` per 100 of `whole`; 100 when only `part` happened (model calls refused by an
    open breaker take no time, so they are failures without calls), 0 when nothing did.
    Each metric comes with its id: expressions sharing a graph must share ids consistently."""
    (part_id, part_metric), (whole_id, whole_metric) = part, whole
    return cw.MathExpression(
        expression=(f"IF({whole_id} > 0, 100 * {part_id} / {whole_id}, IF({part_id} > 0, 100, 0))"),
        using_metrics={part_id: part_metric, whole_id: whole_metric},
        label=label,
        period=MINUTE,
    )


def request_rate(name: str, label: str) -> cw.MathExpression:
    """Requests counted under `name`, per 100 bid requests."""
    return rate_percent(
        (name.lower(), bidder_metric(name)),
        (emf.REQUESTS.lower(), bidder_metric(emf.REQUESTS)),
        label,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        params: Parameters,
        storage: StorageRefs,
        model: ModelEndpoint,
        service: Service,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", master_key=storage.key, enforce_ssl=True)
        # The key's policy lets CloudWatch publish to it (`Storage`).

        def sagemaker_metric(name: str, statistic: str, label: str | None = None) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"EndpointName": model.endpoint_name, "VariantName": MODEL_VARIANT},
                statistic=statistic,
                period=MINUTE,
                label=label,
            )

        latency_p99 = bidder_metric(emf.REQUEST_LATENCY, "p99", "p99")
        deadline_rate = request_rate(emf.DEADLINE_MISSES, "deadline misses %")
        shed_rate = request_rate(emf.SHED, "shed %")
        error_rate = request_rate(emf.ERRORS, "internal errors %")
        failure_rate = rate_percent(
            ("modelcallfailures", bidder_metric(emf.MODEL_CALL_FAILURES)),
            ("modelcalls", model_calls()),
            "model call failures %",
        )
        endpoint_5xx = sagemaker_metric("Invocation5XXErrors", "Sum", "endpoint 5XX")

        def alarm(
            alarm_id: str,
            description: str,
            metric: cw.IMetric,
            threshold: float,
            *,
            below: bool = False,
            evaluation_periods: int = 5,
            datapoints_to_alarm: int = 3,
            missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
        ) -> cw.Alarm:
            return cw.Alarm(
                self,
                alarm_id,
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                comparison_operator=(
                    cw.ComparisonOperator.LESS_THAN_THRESHOLD
                    if below
                    else cw.ComparisonOperator.GREATER_THAN_THRESHOLD
                ),
                evaluation_periods=evaluation_periods,
                datapoints_to_alarm=datapoints_to_alarm,
                treat_missing_data=missing,
            )

        self.alarms = [
            alarm(
                "LatencyP99",
                "The bidder's p99 request latency is above LatencyBudgetMs.",
                latency_p99,
                params.latency_budget_ms,
            ),
            alarm(
                "DeadlineMissRate",
                "Bid requests answered with a no-bid because their time ran out.",
                deadline_rate,
                DEADLINE_MISS_RATE_PERCENT,
            ),
            alarm(
                "ShedRate",
                "Bid requests refused by load shedding: the tasks need more capacity.",
                shed_rate,
                SHED_RATE_PERCENT,
            ),
            alarm(
                "ErrorRate",
                "Bid requests that failed inside the bidder (answered with a no-bid).",
                error_rate,
                ERROR_RATE_PERCENT,
            ),
            alarm(
                "ModelCallFailureRate",
                "Model calls that failed: endpoint errors, timeouts, an open circuit breaker.",
                failure_rate,
                MODEL_CALL_FAILURE_RATE_PERCENT,
            ),
            alarm(
                "Endpoint5XX",
                "The SageMaker endpoint answers invocations with 5XX errors.",
                endpoint_5xx,
                0,
            ),
            alarm(
                "NoTraffic",
                "No bid request for 5 minutes: exchanges cannot reach the bidder.",
                bidder_metric(emf.REQUESTS).with_(period=Duration.minutes(5)),
                1,
                below=True,
                evaluation_periods=1,
                datapoints_to_alarm=1,
                missing=cw.TreatMissingData.BREACHING,
            ),
        ]
        action = cw_actions.SnsAction(self.topic)
        for each in self.alarms:
            each.add_alarm_action(action)
            each.add_ok_action(action)

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-bidder",
            default_interval=Duration.hours(3),
            widgets=[
                [
                    cw.GraphWidget(
                        title="Bid requests / min",
                        left=[
                            bidder_metric(emf.REQUESTS, label="requests"),
                            bidder_metric(emf.BIDS, label="bids"),
                            bidder_metric(emf.NO_BIDS, label="no-bids"),
                            bidder_metric(emf.REJECTED, label="rejected"),
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Request latency (ms)",
                        left=[
                            bidder_metric(emf.REQUEST_LATENCY, "p50", "p50"),
                            latency_p99,
                            bidder_metric(emf.REQUEST_LATENCY, "p99.9", "p99.9"),
                        ],
                        left_annotations=[
                            cw.HorizontalAnnotation(value=params.latency_budget_ms, label="budget")
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Rates (%)",
                        left=[deadline_rate, shed_rate, error_rate, failure_rate],
                        width=8,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Model calls",
                        left=[
                            bidder_metric(emf.MODEL_CALL_LATENCY, "p50", "call p50 (ms)"),
                            bidder_metric(emf.MODEL_CALL_LATENCY, "p99", "call p99 (ms)"),
                        ],
                        right=[bidder_metric(emf.BATCH_SIZE, "Average", "rows per call")],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Endpoint latency (µs)",
                        left=[
                            sagemaker_metric("ModelLatency", "p99", "ModelLatency p99"),
                            sagemaker_metric("OverheadLatency", "p99", "OverheadLatency p99"),
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Endpoint load",
                        left=[
                            sagemaker_metric(
                                "InvocationsPerInstance", "Sum", "invocations per instance"
                            ),
                            model_calls(),
                        ],
                        right=[endpoint_5xx],
                        width=8,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Bidder tasks (%)",
                        left=[
                            service.service.metric_cpu_utilization(period=MINUTE),
                            service.service.metric_memory_utilization(period=MINUTE),
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Recorded traffic dropped / min",
                        left=[bidder_metric(emf.RECORDER_DROPPED, label="records dropped")],
                        width=8,
                    ),
                    cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=8),
                ],
            ],
        )
