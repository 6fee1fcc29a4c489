"""Dependency aliases for the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from poolops_service.config import Settings
from poolops_service.engine import Engine
from poolops_service.engine.budget import Reservation


async def get_engine(request: Request) -> Engine:  # async: sync dependencies hop to a thread
    return request.app.state.engine


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def app_state(request: Request) -> tuple[Engine, Settings]:
    """(engine, settings) read directly, for the inference routes: FastAPI solves each
    ``Depends`` per request (a sub-dependant each, with its own parameters), which costs
    more than the lookup itself."""
    state = request.app.state
    return state.engine, state.settings


def reservation(request: Request) -> Reservation:
    """The request's share of the engine's memory budget (the ``Guard`` middleware's)."""
    return request.state.reservation
