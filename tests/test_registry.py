"""The model registry: immutable versions, atomic champion moves, rollback, clear errors."""

import json

import pytest
from sklearn.dummy import DummyClassifier

from churn_kedro.registry import SERVING_FILE, ModelRegistry, RegistryError
from churn_kedro.registry_cli import main as registry_cli


def card(version):
    return {
        "version": version,
        "family": "dummy",
        "created_at": "2026-01-01T00:00:00Z",
        "threshold": 0.5,
        "metrics": {
            "roc_auc": 0.5,
            "roc_auc_ci": [0.4, 0.6],
            "brier": 0.2,
            "average_precision": 0.2,
        },
        "data": {"training_rows": 10, "source_file": "x"},
    }


@pytest.fixture
def registry(tmp_path):
    reg = ModelRegistry(tmp_path / "registry")
    for version in ("v1", "v2", "v3"):
        # the registry checks that a serving form was written, not what it holds
        reg.register(
            version, DummyClassifier().fit([[0], [1]], [0, 1]), card(version), {SERVING_FILE: b"-"}
        )
    return reg


def test_a_version_without_serving_form_is_registered_but_not_promotable(registry):
    declined = {**card("v4"), "serving": {"servable": False, "reason": "no values for policy_type"}}
    registry.register("v4", None, declined)
    registry.register("v5", None, card("v5"))
    assert registry.versions() == ["v1", "v2", "v3", "v4", "v5"]
    with pytest.raises(RegistryError, match="cannot promote v4: .*no values for policy_type"):
        registry.promote("v4", "manual")
    with pytest.raises(RegistryError, match=f"cannot promote v5: it has no {SERVING_FILE}"):
        registry.promote("v5", "manual")
    assert registry.champion() is None


def test_versions_are_immutable(registry):
    assert registry.versions() == ["v1", "v2", "v3"]
    with pytest.raises(RegistryError, match="already exists"):
        registry.register("v1", None, card("v1"))
    assert registry.load_model("v2").predict([[0]]).shape == (1,)


def test_promote_and_roll_back(registry):
    assert registry.champion() is None
    registry.promote("v1", "first")
    registry.promote("v3", "better")
    assert registry.champion()["version"] == "v3"
    assert registry.rollback()["version"] == "v1"
    assert "rolled back from v3" in registry.champion()["reason"]
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.promote("v9", "typo")


def test_champion_file_is_replaced_whole(registry):
    registry.promote("v1", "first")
    registry.promote("v2", "second")
    leftovers = [p for p in registry.fs.ls(registry.root) if p.endswith(".tmp")]
    assert leftovers == []
    assert (
        json.loads(registry.fs.cat_file(registry._path("champion.json")))["history"][0]["version"]
        == "v1"
    )


def test_cli_rollback_and_clear_errors(registry, capsys):
    root = registry.url
    assert registry_cli(["--registry", root, "rollback"]) == 2
    assert "has no champion.json" in capsys.readouterr().err
    assert registry_cli(["--registry", root, "promote", "v1"]) == 0
    assert registry_cli(["--registry", root, "promote", "v2"]) == 0
    assert registry_cli(["--registry", root, "rollback"]) == 0
    assert "champion is now v1" in capsys.readouterr().out
    assert registry_cli(["--registry", root, "list"]) == 0
    assert "* v1" in capsys.readouterr().out
    registry.fs.pipe_file(registry._path("champion.json"), b"{not json")
    assert registry_cli(["--registry", root, "status"]) == 2
    assert "champion.json is corrupted" in capsys.readouterr().err
    registry.fs.pipe_file(registry._path("champion.json"), b'{"promoted_at": "x"}')
    assert registry_cli(["--registry", root, "rollback"]) == 2
    assert "names no version" in capsys.readouterr().err
