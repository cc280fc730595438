"""The database tables (see docs/architecture.md: storage), one SQLAlchemy definition for SQLite and MySQL.

The feature columns of ``policies_raw`` and ``policies_processed`` come from the
:class:`~churn_kedro.schema.Schema`, so another dataset gets its own columns with
no code change. ``source_file`` is the object's key under the data root
(``raw/insurance_data_....csv``, ``processed/insurance_data_....csv``): the same
text locally and on S3, and distinct for a raw and a processed file of one name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from churn_kedro.schema import MAX_CATEGORY_CHARS, SPLIT_COLUMN, Schema

POLICIES_RAW = "policies_raw"
POLICIES_PROCESSED = "policies_processed"
INGESTION_LOG = "ingestion_log"
QUARANTINE = "quarantine"
CHURN_SCORES = "churn_scores"
MONITORING = "monitoring"
MONITORING_SCORE_SUBJECT = "score"  # the subject of a score batch's prediction-drift rows

# MySQL keys are limited to 3072 bytes (utf8mb4: 4 bytes a character); these fit.
# Key text compares byte for byte on MySQL too, as on SQLite and in validation: object keys
# and ids are case-sensitive ('A1' and 'a1' are two customers), and a binary collation
# makes the bulk load's key comparisons cheaper (~7% of a million-row LOAD DATA).
SOURCE_FILE = sa.String(512).with_variant(
    mysql.VARCHAR(512, collation="utf8mb4_bin"), "mysql", "mariadb"
)
ID = sa.String(128).with_variant(mysql.VARCHAR(128, collation="utf8mb4_bin"), "mysql", "mariadb")
CATEGORY = sa.String(MAX_CATEGORY_CHARS)


def _policies_columns(schema: Schema) -> list[sa.Column]:
    return [
        sa.Column("source_file", SOURCE_FILE, primary_key=True),
        sa.Column(schema.id_column, ID, primary_key=True),
        *(sa.Column(name, sa.Double, nullable=True) for name in schema.numeric_features),
        *(sa.Column(name, CATEGORY, nullable=True) for name in schema.categorical_features),
        sa.Column(schema.target, sa.SmallInteger, nullable=False),  # 1 = the positive label
        sa.Column("row_number", sa.Integer, nullable=False),  # data row in the file, from 1
        sa.Column("ingested_at", sa.DateTime, nullable=False),
    ]


def build_metadata(schema: Schema | None = None) -> sa.MetaData:
    """All six tables; the two policies tables only when a schema is given (they
    need its columns). ``churn_scores`` is keyed on the id as text whatever the schema."""
    metadata = sa.MetaData()
    if schema is not None:
        sa.Table(POLICIES_RAW, metadata, *_policies_columns(schema))
        sa.Table(
            POLICIES_PROCESSED,
            metadata,
            *_policies_columns(schema),
            sa.Column(SPLIT_COLUMN, sa.String(16), nullable=False),  # train / holdout
        )
    sa.Table(
        INGESTION_LOG,
        metadata,
        sa.Column("source_file", SOURCE_FILE, primary_key=True),
        sa.Column("target_table", sa.String(64), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),  # sha256 of the object's bytes
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column(
            "object_version", sa.String(128), nullable=True
        ),  # ETag or mtime: a cheap change check
        sa.Column("rows_read", sa.Integer, nullable=False),
        sa.Column("rows_loaded", sa.Integer, nullable=False),
        sa.Column("rows_rejected", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # loaded / replaced
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        QUARANTINE,
        metadata,
        sa.Column("source_file", SOURCE_FILE, primary_key=True),
        sa.Column("row_number", sa.Integer, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("record", sa.Text, nullable=False),  # the raw row as JSON
        sa.Column("quarantined_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        CHURN_SCORES,
        metadata,
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("source_file", SOURCE_FILE, primary_key=True),
        sa.Column("customer_id", ID, primary_key=True),
        sa.Column("churn_probability", sa.Double, nullable=False),
        sa.Column("churn", sa.Boolean, nullable=False),  # probability >= the model's threshold
        sa.Column("scored_at", sa.DateTime, nullable=False),
    )
    # One row per feature and statistic per monitoring run (docs/architecture.md, "Monitoring").
    sa.Table(
        MONITORING,
        metadata,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("source_file", SOURCE_FILE, primary_key=True),  # snapshot or score batch
        sa.Column(
            "subject", sa.String(128), primary_key=True
        ),  # a feature, score, performance, verdict
        sa.Column("statistic", sa.String(64), primary_key=True),  # psi, ks, roc_auc, ...
        sa.Column("run_at", sa.DateTime, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("reference", sa.Double, nullable=True),  # the profile's or the card's figure
        sa.Column("low", sa.Double, nullable=True),  # interval of value, when it has one
        sa.Column("high", sa.Double, nullable=True),
        sa.Column("p_value", sa.Double, nullable=True),  # corrected, for the drift tests
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),  # the run's verdict
        sa.Column("detail", sa.Text, nullable=True),
    )
    return metadata


def create_engine(url: str | sa.URL, **kwargs) -> sa.Engine:
    """An engine for our tables: a SQLite file's folder is created; MySQL gets
    utf8mb4 and LOAD DATA LOCAL INFILE enabled (the fast bulk path).

    ``secretsmanager:///<secret id>?ssl_ca=<CA bundle>`` (what the ``db_secret`` resolver
    puts in the aws environment's credentials) is resolved here, at connection time: the
    secret's value is read from Secrets Manager and lives only in the engine, never in
    Kedro's configuration. A MySQL URL with ``ssl_ca`` connects over TLS only, verifying
    the server's certificate and host name against that bundle (PyMySQL refuses a server
    that does not offer TLS when a CA is given).
    """
    url = sa.make_url(url)
    if url.get_backend_name() == SECRET_SCHEME:
        url = database_url_from_secret(url.database, url.query.get("ssl_ca"))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() == "mysql":
        url = url.update_query_dict({"charset": "utf8mb4", "local_infile": "1"})
        if "ssl_ca" in url.query and not Path(url.query["ssl_ca"]).is_file():
            raise FileNotFoundError(f"ssl_ca: no CA bundle at {url.query['ssl_ca']}")
    # hide_parameters: an error or a log line never carries a statement's values (customer rows)
    kwargs.setdefault("hide_parameters", True)
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def create_tables(engine: sa.Engine, schema: Schema | None = None) -> sa.MetaData:
    """Create the tables that do not exist yet (idempotent) and return their metadata."""
    metadata = build_metadata(schema)
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            break
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            # a concurrent run created a table between check and create: look again
            if attempt == 4:
                raise
    _check_columns(engine, metadata)
    return metadata


class TableMismatch(RuntimeError):
    """A table exists with other columns than the schema gives it (another dataset's)."""


def _check_columns(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Stop, in one line, before a load meets a table made for another schema."""
    inspector = sa.inspect(engine)
    for name in (POLICIES_RAW, POLICIES_PROCESSED):
        if name not in metadata.tables:
            continue
        has = [c["name"] for c in inspector.get_columns(name)]
        wants = [c.name for c in metadata.tables[name].columns]
        if sorted(has) != sorted(wants):
            where = engine.url.render_as_string(hide_password=True)
            raise TableMismatch(
                f"table {name} in {where} has columns {has}, but the schema wants {wants}: "
                "give this environment its own database (credentials churn_db.con, e.g. "
                "paths.database in its globals.yml), or drop the table to re-create it"
            )


class DatabaseSecretError(RuntimeError):
    """The database secret could not be read; the message never holds its value."""


SECRET_SCHEME = "secretsmanager"


def secret_reference(secret_id: str | None, ca_bundle: str | None = None) -> str | None:
    """``secretsmanager:///<secret id>?ssl_ca=<ca_bundle>``: where the database connection
    is, not what it is. Registered as the ``db_secret`` config resolver (settings.py) for
    conf/aws/credentials.yml; :func:`create_engine` reads the secret when it connects, so
    the password never enters Kedro's resolved configuration (which Kedro logs at DEBUG).
    No secret id (CHURN_DB_SECRET unset) gives None, so runs that need no database start.
    """
    if not secret_id:
        return None
    query = {"ssl_ca": ca_bundle} if ca_bundle else {}
    return sa.URL.create(SECRET_SCHEME, database=secret_id, query=query).render_as_string()


def _secret_region(secret_id: str) -> str | None:
    """The secret's region: from its ARN, else AWS_REGION (set by Glue and Lambda, and
    not read by botocore), else None (botocore's own chain: AWS_DEFAULT_REGION, config)."""
    if secret_id.startswith("arn:"):
        return secret_id.split(":")[3] or None
    return os.environ.get("AWS_REGION") or None


@contextlib.contextmanager
def _quiet_botocore() -> Iterator[None]:
    """botocore logs whole request and response bodies at DEBUG: a secret's value among
    them. Its body loggers are held at INFO for the call."""
    loggers = [logging.getLogger(name) for name in ("botocore.parsers", "botocore.endpoint")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def database_url_from_secret(secret_id: str, ca_bundle: str | None = None) -> sa.URL:
    """The SQLAlchemy URL of the RDS MySQL database whose connection lives in the AWS
    Secrets Manager secret ``secret_id`` (JSON: host, port, username, password, dbname;
    the RDS-managed layout, ``user``/``database`` accepted too), over TLS verified against
    ``ca_bundle`` (the RDS certificate bundle; required: RDS is never reached in clear).

    Returns a URL object (its ``str`` hides the password); errors name the secret id and
    the problem only. boto3 is imported only here.
    """
    if not ca_bundle:
        raise DatabaseSecretError(
            f"secret {secret_id!r}: no CA bundle to verify the database's TLS certificate "
            "(set CHURN_DB_CA_BUNDLE, or pass --db-ca-bundle to the Glue job)"
        )
    import boto3  # only the aws environment needs it
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.client("secretsmanager", region_name=_secret_region(secret_id))
        with _quiet_botocore():
            value = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise DatabaseSecretError(f"secret {secret_id!r}: cannot read it ({code})") from None
    except BotoCoreError as exc:
        raise DatabaseSecretError(
            f"secret {secret_id!r}: cannot reach Secrets Manager ({type(exc).__name__})"
        ) from None
    try:
        fields = json.loads(value)
        if not isinstance(fields, dict):
            raise ValueError
    except ValueError:
        raise DatabaseSecretError(f"secret {secret_id!r}: not a JSON object") from None
    missing = [k for k in ("host", "password") if k not in fields]
    if "username" not in fields and "user" not in fields:
        missing.append("username")
    if "dbname" not in fields and "database" not in fields:
        missing.append("dbname")
    if missing:
        raise DatabaseSecretError(f"secret {secret_id!r}: missing key(s) {', '.join(missing)}")
    return sa.URL.create(
        "mysql+pymysql",
        username=str(fields.get("username", fields.get("user"))),
        password=str(fields["password"]),
        host=str(fields["host"]),
        port=int(fields.get("port") or 3306),
        database=str(fields.get("dbname", fields.get("database"))),
        query={"ssl_ca": ca_bundle},
    )


_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----"
)


def jdbc_tls_options(url: sa.URL) -> dict[str, str]:
    """The MariaDB Connector/J properties that give a JDBC connection (the Spark engine's
    staging writes) the TLS of ``url``'s own engine: with ``ssl_ca`` in the URL, TLS only,
    the server's certificate and host name verified against that bundle. The bundle travels
    as its PEM text, not its path: the executors that write are other machines on Glue,
    without the driver's copy of the file. No ``ssl_ca``: no properties (a local server).
    """
    ca = url.query.get("ssl_ca")
    if not ca:
        return {}
    path = Path(ca)
    if not path.is_file():
        raise FileNotFoundError(f"ssl_ca: no CA bundle at {ca}")
    certificates = _PEM_CERTIFICATE.findall(path.read_text(errors="replace"))
    if not certificates:
        raise ValueError(f"ssl_ca: {ca} holds no PEM certificate")
    return {
        "useSsl": "true",  # Connector/J 2.x; 3.x reads sslMode
        "sslMode": "verify-full",
        "serverSslCert": "\n".join(certificates),  # every CA of the bundle (RDS: all regions')
        "trustServerCertificate": "false",
        "disableSslHostnameVerification": "false",
    }


# What the ingestion and scoring jobs do to the database: create their tables (and their
# indexes), read, insert (LOAD DATA LOCAL INFILE needs INSERT only, not FILE), update the
# ingestion log and delete an object's rows when it is replaced; DROP for the Spark engine's
# staging tables, which its executors write over JDBC and the job drops after the move.
APP_GRANTS = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX"


def bootstrap_app_user(
    master_secret_id: str, app_secret_id: str, ca_bundle: str | None = None
) -> str:
    """Create (or bring up to date) the application user the jobs connect as, from the
    master user: the user, password and database of the ``app_secret_id`` secret, over TLS
    only (``REQUIRE SSL``), with :data:`APP_GRANTS` on that database and nothing else.
    Idempotent: re-running it resets the password to the secret's (after a rotation).
    Returns the user name. The password goes to the server as a bound parameter of an
    engine that hides parameters in its logs and errors."""
    app = database_url_from_secret(app_secret_id, ca_bundle)
    master = database_url_from_secret(master_secret_id, ca_bundle).set(database=app.database)
    user, name = app.username, app.database
    if not re.fullmatch(r"\w{1,32}", user) or not re.fullmatch(r"\w{1,64}", name):
        raise DatabaseSecretError(
            f"secret {app_secret_id!r}: username or dbname is not a plain name"
        )
    engine = create_engine(master, hide_parameters=True)
    try:
        with engine.begin() as conn:
            for statement in (
                f"CREATE USER IF NOT EXISTS '{user}'@'%%' IDENTIFIED BY %s REQUIRE SSL",
                f"ALTER USER '{user}'@'%%' IDENTIFIED BY %s REQUIRE SSL",
            ):
                conn.exec_driver_sql(statement, (app.password,))
            conn.exec_driver_sql(f"GRANT {APP_GRANTS} ON `{name}`.* TO '{user}'@'%%'")
    finally:
        engine.dispose()
    return user
