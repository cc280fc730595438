from kedro.pipeline import Pipeline

from churn_kedro.pipelines import data_processing, data_science, model_promotion


def create_pipeline(**kwargs) -> Pipeline:
    return (
        data_processing.create_pipeline()
        + data_science.create_pipeline()
        + model_promotion.create_pipeline()
    )
