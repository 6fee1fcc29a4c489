"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from poolops_service.api.deps import EngineDep
from poolops_service.api.schemas import Live, Ready

router = APIRouter(tags=["health"])


def readiness(engine) -> tuple[bool, dict]:
    body = Ready(
        ready=engine.ready,
        phase=engine.phase,
        reasons=engine.reasons(),
        models={n: engine.model_status(n) for n in engine.registry},
    )
    return engine.ready, body.model_dump()


@router.get("/healthz", response_model=Live, summary="Liveness: the process answers")
async def healthz() -> Live:
    return Live()


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness: op graphs and every registered model loaded and warmed up",
    responses={503: {"model": Ready, "description": "not ready; reasons say why"}},
)
async def readyz(engine: EngineDep):
    ok, body = readiness(engine)
    return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})
