"""Monitoring of the serving champion (docs/architecture.md, "Monitoring"): ``profile``
(numpy and json only: the serving image reads it) and ``drift`` (the statistics and
the verdict)."""
