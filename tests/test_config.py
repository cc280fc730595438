"""Runtime parameters change exactly the keys they name, in every environment."""

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro_project import make_project


@pytest.mark.parametrize("env", [None, "telco", "aws"])
def test_runtime_params_override_one_key_only(tmp_path, monkeypatch, env):
    project = make_project(tmp_path)
    monkeypatch.setenv("CHURN_BUCKET", "bucket")
    bootstrap_project(project)
    runtime = {
        "data_science.cv_folds": 3,
        "data_science": {"families": {"catboost": {"n_trials": 2}}},
    }
    with KedroSession.create(project_path=project, env=env, runtime_params=runtime) as session:
        params = session.load_context().params
    science = params["data_science"]
    assert science["cv_folds"] == 3 and science["families"]["catboost"]["n_trials"] == 2
    assert science["random_state"] == 42 and science["families"]["random_forest"]["n_trials"] == 10
    assert params["schema"]["id_column"] == ("CustomerID" if env == "telco" else "customer_id")
