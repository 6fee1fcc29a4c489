"""Model loading and inference (no web code): sessions, op graphs, model runners, batcher."""

from poolops_service.engine.engine import Engine, EngineError

__all__ = ["Engine", "EngineError"]
