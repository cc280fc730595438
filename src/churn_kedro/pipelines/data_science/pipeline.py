from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from .models import FAMILIES
from .nodes import select_challenger, tune_model_family


def create_pipeline(**kwargs) -> Pipeline:
    # One tuning node per family (the families are code; their budgets and search
    # spaces are parameters), then the choice between them.
    tune_nodes = [
        Node(
            update_wrapper(partial(tune_model_family, family=family), tune_model_family),
            inputs=[
                "train_set",
                "params:schema",
                "params:data_science",
                f"params:data_science.families.{family}",
            ],
            outputs=f"{family}_candidate",
            name=f"tune_{family}",
        )
        for family in FAMILIES
    ]
    return Pipeline(
        [
            *tune_nodes,
            Node(
                select_challenger,
                inputs=[
                    "train_set",
                    "params:schema",
                    "params:data_science",
                    *(f"{family}_candidate" for family in FAMILIES),
                ],
                outputs=["challenger", "model_candidates"],
                name="select_challenger",
            ),
        ]
    )
