from kedro.pipeline import Node, Pipeline

from .nodes import (
    exit_on_retrain,
    monitor_performance,
    monitor_predictions,
    monitor_snapshot,
    report_monitoring,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                monitor_snapshot,
                inputs=[
                    "raw_objects",
                    "objects_to_score",
                    "monitored_champion",
                    "churn_scores",
                    "params:snapshot_pattern",
                    "params:schema",
                    "params:monitor",
                ],
                outputs=["monitored_snapshot", "monitored_labels"],
                name="monitor_snapshot",
            ),
            Node(
                monitor_predictions,
                inputs=[
                    "monitored_champion",
                    "churn_scores",
                    "monitoring_history",
                    "params:monitor",
                ],
                outputs="monitored_predictions",
                name="monitor_predictions",
            ),
            Node(
                monitor_performance,
                inputs=[
                    "monitored_champion",
                    "churn_scores",
                    "monitored_snapshot",
                    "monitored_labels",
                    "monitoring_history",
                    "params:snapshot_pattern",
                    "params:monitor",
                ],
                outputs="monitored_performance",
                name="monitor_performance",
            ),
            Node(
                report_monitoring,
                inputs=[
                    "monitored_champion",
                    "monitored_snapshot",
                    "monitored_predictions",
                    "monitored_performance",
                    "params:monitor",
                ],
                outputs=[
                    "monitoring_rows",
                    "monitoring_report",
                    "monitoring_verdict",
                    "monitoring_events",
                    "monitoring_drift_plot",
                    "monitoring_score_plot",
                    "monitoring_calibration_plot",
                ],
                name="report_monitoring",
            ),
            # last: the outputs above are saved before a retrain verdict ends the run
            Node(exit_on_retrain, inputs="monitoring_report", outputs=None, name="exit_on_retrain"),
        ]
    )
