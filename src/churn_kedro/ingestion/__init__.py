"""Exactly-once ingestion of snapshot objects into the project database.

- :mod:`~churn_kedro.ingestion.store`: the tables, one transaction an object (SQLite, MySQL)
- :mod:`~churn_kedro.ingestion.objects`: reading and validating one object in chunks
- :mod:`~churn_kedro.ingestion.run`: a run over every new object under a prefix
"""
