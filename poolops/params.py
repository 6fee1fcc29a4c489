"""Parameter models shared by the ops: pairs of ints, the base model, clean errors.

Every op's parameters are a frozen pydantic model. Validation errors are turned
into :class:`ParamError` (a ``ValueError``) whose message names the op, the
parameter and what to change, so the torch functions, the ONNX builders and the
service all report bad parameters the same way.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class ParamError(ValueError):
    """A parameter or input that an op cannot accept.

    Attributes:
        op: the op's name.
        param: the offending parameter (or input) name.
    """

    def __init__(self, op: str, param: str, message: str):
        self.op = op
        self.param = param
        super().__init__(f"{op}: '{param}': {message}")


def _to_pair(value: Any) -> Any:
    """``2 -> (2, 2)``; a 2-sequence is kept; anything else goes on to validation."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return (value[0], value[0])
    return value


def _to_pair_or_none(value: Any) -> Any:
    return None if value is None else _to_pair(value)


PositivePair = Annotated[
    tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]], BeforeValidator(_to_pair)
]
NonNegativePair = Annotated[
    tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]], BeforeValidator(_to_pair)
]
OptionalPositivePair = Annotated[
    tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None,
    BeforeValidator(_to_pair_or_none),
]


class OpParams(BaseModel):
    """Base of every op's parameter model: frozen (hashable, cacheable), no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


_TAGGED = re.compile(r"^(?:Value error, )?\[(\w+)\] (.*)$", re.S)


def invalid(param: str, message: str) -> ValueError:
    """An error for a model validator to raise about one parameter (``raise invalid(...)``)."""
    return ValueError(f"[{param}] {message}")


def parse_params(op: str, model: type[OpParams], params: dict[str, Any]) -> OpParams:
    """Validate ``params`` against ``model``; raise :class:`ParamError` naming the parameter."""
    try:
        return model(**params)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc", ())
        name = str(loc[0]) if loc else "params"
        msg = err.get("msg", str(exc))
        tagged = _TAGGED.match(msg)
        if tagged:  # raised by a model validator through invalid()
            name, msg = tagged.group(1), tagged.group(2)
        elif err.get("type") == "extra_forbidden":
            known = ", ".join(model.model_fields)
            msg = f"unknown parameter; known parameters: {known}"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {quote(err['input'])})"
        raise ParamError(op, name, msg) from None


def quote(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters: error messages quote no more of an
    input than that (a long list is cut before its repr is made)."""
    if isinstance(value, (list, tuple)) and len(value) > limit:
        value = value[:limit]
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_LIST_LENGTH = 16
"""The most entries a list-valued parameter (SPP levels, multiscale kernels) may have."""


def check_list_length(param: str, values: tuple, what: str) -> None:
    """``invalid(param)`` (for a model validator) when ``values`` has more than
    :data:`MAX_LIST_LENGTH` entries."""
    if len(values) > MAX_LIST_LENGTH:
        raise invalid(param, f"at most {MAX_LIST_LENGTH} {what}, got {len(values)}")
