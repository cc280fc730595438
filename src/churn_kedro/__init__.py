"""churn-kedro: insurance churn modelling as a Kedro project."""

__version__ = "0.1.0"
