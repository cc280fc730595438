"""The data contract: rules from parameters, row reasons, file-level errors."""

import io
from pathlib import Path

import pandas as pd
import pytest
import yaml

from churn_kedro.schema import Schema, SnapshotError, fingerprint, validate_frame

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def schema() -> Schema:
    params = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())
    return Schema.from_params(params["schema"])


def read(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str)


HEADER = "customer_id,age,annual_premium,policy_type,claims_count,churn\n"


def test_rules_come_from_parameters(schema):
    assert schema.id_column == "customer_id"
    assert schema.target == "churn" and schema.positive_label == "1"
    assert schema.features == ["age", "annual_premium", "claims_count", "policy_type"]
    assert Schema.from_params(schema.to_dict()) == schema


def test_good_rows_are_typed(schema):
    result = validate_frame(read(HEADER + "1,36,2386.5,auto,1,0\n2,,100,,0,1\n"), schema, "f.csv")
    assert result.rejected.empty
    valid = result.valid
    assert list(valid.columns) == ["customer_id", *schema.features, "churn"]
    assert valid["age"].dtype == "float64" and pd.isna(valid.loc[1, "age"])
    assert valid.loc[1, "policy_type"] is None
    assert valid["churn"].tolist() == [0, 1]
    assert valid["customer_id"].tolist() == ["1", "2"]


def test_each_broken_rule_is_named_with_its_row(schema):
    text = HEADER + "\n".join(
        [
            "1,150,100,auto,0,0",  # row 1: age above max
            "2,30,-5,auto,0,0",  # row 2: premium not > 0
            "3,30,abc,auto,0,0",  # row 3: text in a numeric column
            "4,30,100,boat,0,0",  # row 4: unknown category
            "5,30,100,auto,1.5,0",  # row 5: claims not whole
            ",30,100,auto,0,0",  # row 6: missing id
            "7,30,100,auto,0,maybe",  # row 7: unknown label
            "8,17,100,auto,-1,1",  # row 8: two problems
            "9,40,100,home,0,1",  # row 9: fine
        ]
    )
    result = validate_frame(read(text), schema, "f.csv")
    reasons = dict(zip(result.rejected["row_number"], result.rejected["reason"]))
    assert reasons[1] == "age: 150 is above the maximum 110"
    assert reasons[2] == "annual_premium: -5 is not greater than 0"
    assert reasons[3] == "annual_premium: 'abc' is not a number"
    assert reasons[4] == "policy_type: 'boat' is not one of auto, home, life"
    assert reasons[5] == "claims_count: 1.5 is not a whole number"
    assert reasons[6] == "customer_id: missing"
    assert reasons[7] == "churn: 'maybe' is not one of 1, 0"
    assert "age: 17 is below the minimum 18" in reasons[8] and "claims_count: -1" in reasons[8]
    assert result.valid["customer_id"].tolist() == ["9"]
    # nothing is lost: every input row is either valid or rejected with its raw record
    assert len(result.valid) + len(result.rejected) == 9
    assert '"annual_premium": "abc"' in result.rejected.set_index("row_number").loc[3, "record"]


def test_duplicates(schema):
    text = HEADER + "1,30,100,auto,0,0\n2,40,100,home,0,1\n1,30,100,auto,0,0\n2,41,100,home,0,1\n"
    result = validate_frame(read(text), schema, "f.csv", first_row_number=101)
    reasons = dict(zip(result.rejected["row_number"], result.rejected["reason"]))
    assert reasons[103] == "duplicate: repeats row 101"
    assert "appears on several rows" in reasons[102] and "appears on several rows" in reasons[104]
    assert result.valid["customer_id"].tolist() == ["1"]


def test_missing_column_is_a_file_error(schema):
    with pytest.raises(SnapshotError, match=r"f\.csv: missing required column\(s\) churn"):
        validate_frame(
            read("customer_id,age,annual_premium,policy_type,claims_count\n1,2,3,auto,0\n"),
            schema,
            "f.csv",
        )


def test_wrong_delimiter_is_recognised(schema):
    with pytest.raises(SnapshotError, match="';'-delimited"):
        validate_frame(read(HEADER.replace(",", ";") + "1;30;100;auto;0;0\n"), schema, "f.csv")


def test_unlabelled_files_need_no_target(schema):
    result = validate_frame(
        read("customer_id,age,annual_premium,policy_type,claims_count\n1,30,100,auto,0\n"),
        schema,
        "f.csv",
        labelled=False,
    )
    assert "churn" not in result.valid.columns and len(result.valid) == 1


def test_string_labels_and_other_columns():
    schema = Schema.from_params(
        {
            "id_column": "CustomerID",
            "target": {"column": "Churn", "positive": "Yes", "negative": "No"},
            "numeric_features": {"tenure": {"min": 0}},
            "categorical_features": {"contract": {"values": ["monthly", "yearly"]}, "region": {}},
        }
    )
    result = validate_frame(
        read(
            "CustomerID,tenure,contract,region,Churn\nA,3,monthly,x,Yes\nB,5,yearly,y,No\nC,1,monthly,z,Perhaps\n"
        ),
        schema,
        "t.csv",
    )
    assert result.valid["Churn"].tolist() == [1, 0]
    assert result.rejected["reason"].tolist() == ["Churn: 'Perhaps' is not one of Yes, No"]


def test_incomplete_parameters_are_reported():
    with pytest.raises(ValueError, match="schema parameters"):
        Schema.from_params({"id_column": "x"})


def test_fingerprint_changes_with_content(schema):
    a = read(HEADER + "1,30,100,auto,0,0\n")
    b = read(HEADER + "1,31,100,auto,0,0\n")
    assert fingerprint(a) == fingerprint(a.copy()) != fingerprint(b)


def test_unquoted_yes_no_in_the_schema_stops_with_the_fix():
    params = yaml.safe_load(
        """
        id_column: id
        target: {column: churn, positive: Yes, negative: No}
        numeric_features: {age: {}}
        categorical_features:
          paperless: {values: [Yes, No]}
          code: {values: ["A", 1]}
          grade: {values: [1, 2, 3]}
        """
    )
    with pytest.raises(ValueError) as failure:
        Schema.from_params(params)
    message = str(failure.value)
    assert "target.positive: True" in message and "target.negative: False" in message
    assert "categorical_features.paperless.values: [True, False]" in message
    assert "categorical_features.code.values: ['A', 1]" in message
    assert "grade" not in message  # numbers alone are a numeric code, read as text
    assert 'quote them as they appear in the files, e.g. positive: "Yes"' in message


def test_ids_longer_than_the_maximum_are_rejected(schema):
    assert schema.id_max_length == 128  # conf/base/parameters.yml: the database column's width
    longest, too_long = "L" * 128, "L" * 129
    text = HEADER + f"{longest},30,100,auto,0,0\n {too_long} ,30,100,auto,0,0\n  ,30,100,auto,0,0\n"
    result = validate_frame(read(text), schema, "f.csv")
    reasons = dict(zip(result.rejected["row_number"], result.rejected["reason"]))
    assert reasons == {
        2: "customer_id: 129 characters, longer than the maximum of 128",
        3: "customer_id: missing",  # only spaces
    }
    assert result.valid["customer_id"].tolist() == [longest]
    shorter = Schema.from_params({**schema.to_dict(), "id_max_length": 4})
    assert shorter.to_dict()["id_max_length"] == 4
    result = validate_frame(
        read(HEADER + "abcd,30,100,auto,0,0\nabcde,30,100,auto,0,0\n"), shorter, "f"
    )
    assert result.rejected["reason"].tolist() == [
        "customer_id: 5 characters, longer than the maximum of 4"
    ]
    with pytest.raises(ValueError, match="id_max_length must be 1 or more"):
        Schema.from_params({**schema.to_dict(), "id_max_length": 0})
