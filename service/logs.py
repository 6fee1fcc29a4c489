"""Logging for ``poolops serve``: uvicorn's own configuration plus the ``poolops`` loggers
(start-up phases: building, loading, warming up, "ready at ..."), with the access lines of
the health probes (``/healthz``, ``/readyz``, ``/v2/health/*``) left out: an orchestrator
polls them every few seconds and their lines would drown everything else."""

from __future__ import annotations

import copy
import logging
from typing import Any

PROBES = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")


class QuietProbes(logging.Filter):
    """Drops uvicorn access records of the health probes (any status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3:  # (client, method, path, http version, status)
            path = str(args[2]).split("?", 1)[0]
            return path not in PROBES
        return True


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's ``LOGGING_CONFIG`` with the probe filter on its access log and the
    ``poolops`` loggers printed like uvicorn's own lines."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["quiet_probes"] = {"()": "poolops_service.logs.QuietProbes"}
    cfg["handlers"]["access"].setdefault("filters", []).append("quiet_probes")
    cfg["loggers"]["poolops"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg
