from kedro.pipeline import Node, Pipeline

from .nodes import TUNERS, select_challenger


def create_pipeline(**kwargs) -> Pipeline:
    # One tuning node per family, then the choice between them. A disabled family's node
    # returns a DisabledFamily, which select_challenger leaves out.
    tune_nodes = [
        Node(
            tune,
            inputs=[
                "train_set",
                "params:schema",
                "params:data_science",
                f"params:data_science.families.{family}",
            ],
            outputs=f"{family}_candidate",
            name=f"tune_{family}",
        )
        for family, tune in TUNERS.items()
    ]
    return Pipeline(
        [
            *tune_nodes,
            Node(
                select_challenger,
                inputs=["params:data_science", *(f"{family}_candidate" for family in TUNERS)],
                outputs=["challenger", "model_candidates"],
                name="select_challenger",
            ),
        ]
    )
