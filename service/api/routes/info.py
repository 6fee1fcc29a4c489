"""Version, execution providers and device."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter

from poolops.registry import list_ops
from poolops_service.api.deps import EngineDep
from poolops_service.api.schemas import Info

router = APIRouter(prefix="/v1", tags=["info"])


@router.get("/info", response_model=Info, summary="Version, execution providers (available and in use), device")
async def info(engine: EngineDep) -> Info:
    return Info(version=version("poolops"), ops=len(list_ops()), models=len(engine.registry), engine=engine.info())
