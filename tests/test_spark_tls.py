"""The Spark engine's JDBC writes over TLS, as RDS requires: the staging tables go through
MariaDB Connector/J with the CA bundle of the engine's own URL (the secret's ssl_ca), to a
MariaDB of the test's own that refuses sessions in clear (tests/tls_mariadb.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_ingest import query, snapshot
from test_spark_parity import FIXTURE, FIXTURE_LOADED, FIXTURE_REJECTED, spark_ingest

from churn_kedro import database

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.mysql, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
JDBC_JAR = Path("/usr/share/java/mariadb-java-client.jar")


@pytest.fixture(scope="module")
def spark():
    import yaml

    from churn_kedro.spark.session import session

    if not JDBC_JAR.is_file():
        pytest.skip(f"no {JDBC_JAR}: apt-get install libmariadb-java")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    settings = yaml.safe_load((REPO / "conf/spark/spark.yml").read_text())
    spark = session({**settings, "spark.sql.shuffle.partitions": 2})
    yield spark
    spark.stop()


def rows(url: str, sql: str) -> list[tuple]:
    return query(Path(), sql, url)  # on the database at url


def test_the_jdbc_staging_load_goes_over_tls_verified_by_the_secrets_ca_bundle(
    tmp_path, spark, rds
):
    # a bundle of several CAs, as RDS's is (every region's): the one that signed the server
    # comes second
    bundle = tmp_path / "bundle.pem"
    other = Path(rds["ca_bundle"]).with_name("other-ca.pem")
    bundle.write_text(other.read_text() + "\n" + Path(rds["ca_bundle"]).read_text())
    reference = database.secret_reference(rds["secret_arn"], str(bundle))
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", FIXTURE)

    report = spark_ingest(tmp_path, url=reference)
    again = spark_ingest(tmp_path, url=reference)

    assert [e["rows_loaded"] for e in report["loaded"]] == [FIXTURE_LOADED]
    assert again["skipped"] == ["raw/insurance_data_2026-11-01_06-00-00.csv"]
    # the server admits no session in clear: these rows came through TLS sessions
    assert rows(rds["url"], "SELECT COUNT(*) FROM policies_raw") == [(FIXTURE_LOADED,)]
    assert rows(rds["url"], "SELECT COUNT(*) FROM quarantine") == [(FIXTURE_REJECTED,)]
    assert rows(rds["url"], "SELECT rows_loaded, rows_rejected FROM ingestion_log") == [
        (FIXTURE_LOADED, FIXTURE_REJECTED)
    ]
    # the staging tables are gone (the application user may drop them)
    tables = [t for (t,) in rows(rds["url"], "SHOW TABLES")]
    assert not [t for t in tables if t.startswith("stage_")], tables


def test_a_jdbc_write_without_the_ca_or_in_clear_is_refused_and_writes_nothing(
    tmp_path, spark, rds, tls_mariadb
):
    from churn_kedro.spark.store import SparkIngestionDatabase

    frame = spark.createDataFrame([(1, "a")], "id int, name string")
    in_clear = sa.make_url(rds["url"]).difference_update_query(["ssl_ca"])
    wrong_ca = sa.make_url(rds["url"]).update_query_dict(
        {"ssl_ca": str(tls_mariadb.other_ca_bundle)}
    )
    for url, reason in (
        # require_secure_transport: MariaDB answers a session in clear "access denied"
        (in_clear, "Access denied"),
        (wrong_ca, "certification path"),  # the server's certificate is not the bundle's CA's
    ):
        # the JDBC path alone: the tables exist (made over the right TLS), then the store's
        # engine URL, which the JDBC options come from, is the one under test
        store = SparkIngestionDatabase(database.create_engine(rds["url"]))
        store.engine.dispose()
        store.engine = database.create_engine(url)
        with pytest.raises(Exception, match=reason):
            store.stage(frame, "stage_rows_tls_probe")
    assert "stage_rows_tls_probe" not in [t for (t,) in rows(rds["url"], "SHOW TABLES")]

    # and a bundle without any certificate stops before any connection, naming the file
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    url = sa.make_url(rds["url"]).update_query_dict({"ssl_ca": str(empty)})
    store = SparkIngestionDatabase(database.create_engine(rds["url"]))
    store.engine.dispose()
    store.engine = database.create_engine(url)
    with pytest.raises(ValueError, match=f"{empty} holds no PEM certificate"):
        store.stage(frame, "stage_rows_tls_probe")


def test_a_url_without_ssl_ca_gives_no_tls_properties_and_one_with_it_the_whole_bundle(
    tmp_path,
):
    assert database.jdbc_tls_options(sa.make_url("mysql+pymysql://root@127.0.0.1/churn")) == {}
    bundle = tmp_path / "bundle.pem"
    block = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----"
    bundle.write_text(f"# two CAs\n{block}\n\n{block}\n")
    options = database.jdbc_tls_options(
        sa.make_url(f"mysql+pymysql://u:p@db.example/churn?ssl_ca={bundle}")
    )
    assert options["serverSslCert"] == f"{block}\n{block}"  # the PEM text, not the path
    assert options["useSsl"] == "true" and options["sslMode"] == "verify-full"
    assert options["trustServerCertificate"] == "false"
    assert options["disableSslHostnameVerification"] == "false"
