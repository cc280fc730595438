"""Glue 5.0 job script, run once by infra/deploy.sh (and again after a rotation): create
the application user the ingestion jobs connect as, from the RDS master user. Arguments:
see churn_kedro.glue_job (--master-secret-id, --db-secret-id, --db-ca-bundle)."""

from churn_kedro.glue_job import bootstrap_main

if __name__ == "__main__":
    bootstrap_main()
