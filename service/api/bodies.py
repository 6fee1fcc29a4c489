"""Request bodies that come as JSON or as multipart uploads on the same path.

FastAPI declares one body type per route; these routes read the body themselves by
Content-Type and document both in OpenAPI (``openapi_extra``)."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from poolops_service.engine.errors import BadInput, TooLarge, Unsupported

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"
MULTIPART = "multipart/form-data"
NPY = "application/x-npy"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


INLINE_BYTES = 64 * 1024  # larger JSON bodies are parsed in a worker thread, off the event loop


def check_numbers(body: bytes, limit: int) -> None:
    """``TooLarge`` when a JSON body holds more than about ``limit`` values (counted by their
    commas, before parsing: every parsed number is a Python object made under the GIL, so a
    big nested list would stall the event loop even when parsed in a worker thread)."""
    n = body.count(b",") + 1
    if n > limit:
        raise TooLarge(
            f"the JSON body holds about {n} values, more than {limit} (POOLOPS_MAX_JSON_ELEMENTS): send large "
            "tensors as base64 raw buffers ({\"b64\", \"shape\", \"dtype\"}), images as files, or /v2 binary tensors"
        )


async def json_body(request: Request, model: type[M], offload=None, max_numbers: int | None = None) -> M:
    """The body validated as ``model``; ``offload(fn, *args, large=...)`` (the engine's)
    runs the parsing of large bodies in a worker thread; ``max_numbers``: see
    :func:`check_numbers`."""
    body = await request.body()
    if not body:
        raise BadInput(f"the request body is empty: send a JSON object ({model.__name__})")
    if max_numbers is not None:
        check_numbers(body, max_numbers)
    try:
        if offload is not None and len(body) > INLINE_BYTES:
            return await offload(model.model_validate_json, body, large=True)
        return model.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_context=False)) from None


async def form_body(request: Request, max_files: int) -> FormData:
    try:
        return await request.form(max_files=max_files, max_fields=64)
    except Exception as e:  # noqa: BLE001 - python-multipart's parse errors (a 400 from Starlette too)
        if getattr(e, "status_code", None) == 413:
            raise
        raise BadInput(f"the multipart body could not be parsed: {getattr(e, 'detail', e)}") from None


def kind_of(request: Request, allowed: tuple[str, ...]) -> str:
    mt = media_type(request)
    if mt not in allowed:
        raise Unsupported(f"Content-Type must be one of {list(allowed)}, got {mt or 'none'!r}")
    return mt


async def files(form: FormData, field: str) -> list[tuple[str | None, bytes]]:
    out = []
    for v in form.getlist(field):
        if isinstance(v, UploadFile):
            out.append((v.filename, await v.read()))
        else:
            raise BadInput(f"form field {field!r} must be a file upload, got text")
    return out


def multipart_schema(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required}


def body_doc(json_model: type[BaseModel], form: dict, description: str) -> dict:
    """``openapi_extra`` for a route taking ``json_model`` as JSON or ``form`` as multipart."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                JSON: {"schema": {"$ref": f"#/components/schemas/{json_model.__name__}"}},
                MULTIPART: {"schema": form},
            },
        }
    }
