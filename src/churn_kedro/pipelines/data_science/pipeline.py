from kedro.pipeline import Node, Pipeline

from .nodes import TUNERS, refit_challenger, select_challenger


def create_pipeline(**kwargs) -> Pipeline:
    # One tuning node per family (the search only), the choice between them by CV, then
    # one refit of the chosen family on the whole train split. A disabled family's node
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
            outputs=f"{family}_search",
            name=f"tune_{family}",
        )
        for family, tune in TUNERS.items()
    ]
    return Pipeline(
        [
            *tune_nodes,
            Node(
                select_challenger,
                inputs=["params:data_science", *(f"{family}_search" for family in TUNERS)],
                outputs=["challenger_choice", "model_candidates"],
                name="select_challenger",
            ),
            Node(
                refit_challenger,
                inputs=["train_set", "params:schema", "params:data_science", "challenger_choice"],
                outputs="challenger",
                name="refit_challenger",
            ),
        ]
    )
