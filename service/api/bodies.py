"""Request bodies that come as JSON or as multipart uploads on the same path.

FastAPI declares one body type per route; these routes read the body themselves by
Content-Type and document both in OpenAPI (``openapi_extra``)."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData, Headers

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


MAX_FIELDS = 64  # text fields of a multipart form
MAX_FIELD_BYTES = 1 << 20  # one text field's value (Starlette's limit)


async def form_body(request: Request, max_files: int) -> FormData:
    """The multipart form: files as :class:`Upload` (their bytes), text fields as ``str``. The body is read whole (the budget charged it twice before reading: the
    bytes and the parts) and parsed by python-multipart in one call, without Starlette's
    per-chunk awaits and per-file spooled temporary files."""
    body = await request.body()
    try:
        return parse_form(body, request.headers.get("content-type", ""), max_files, MAX_FIELDS)
    except _FormError as e:
        raise BadInput(f"the multipart body could not be parsed: {e}") from None


class _FormError(ValueError):
    pass


@dataclass(frozen=True)
class Upload:
    """A file of a multipart form, in memory (an ``UploadFile`` over memory would still
    hop to a worker thread to be read)."""

    filename: str | None
    data: bytes
    headers: Headers


def _decode(value: bytes, charset: str) -> str:
    try:
        return value.decode(charset)
    except UnicodeDecodeError:
        return value.decode("latin-1")


class _Parts:
    """python-multipart's callbacks, keeping each part in memory (what Starlette's
    ``MultiPartParser`` does, with its limits and messages)."""

    def __init__(self, charset: str, max_files: int, max_fields: int):
        self.charset, self.max_files, self.max_fields = charset, max_files, max_fields
        self.items: list[tuple[str, str | Upload]] = []
        self.files = self.fields = 0
        self.header_name, self.header_value = b"", b""

    def on_part_begin(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.disposition = b""
        self.chunks: list[bytes] = []
        self.size = 0
        self.filename: str | None = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        name = self.header_name.lower()
        if name == b"content-disposition":
            self.disposition = self.header_value
        self.headers.append((name, self.header_value))
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        if b"name" not in options:
            raise _FormError('The Content-Disposition header field "name" must be provided.')
        self.name = _decode(options[b"name"], self.charset)
        if b"filename" in options:
            self.files += 1
            if self.files > self.max_files:
                raise _FormError(f"Too many files. Maximum number of files is {self.max_files}.")
            self.filename = _decode(options[b"filename"], self.charset)
        else:
            self.fields += 1
            if self.fields > self.max_fields:
                raise _FormError(f"Too many fields. Maximum number of fields is {self.max_fields}.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.size += end - start
        if self.filename is None and self.size > MAX_FIELD_BYTES:
            raise _FormError(f"Part exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")
        self.chunks.append(data[start:end])

    def on_part_end(self) -> None:
        data = b"".join(self.chunks)  # usually one chunk: the body came whole
        if self.filename is None:
            self.items.append((self.name, _decode(data, self.charset)))
        else:
            self.items.append((self.name, Upload(self.filename, data, Headers(raw=self.headers))))


def parse_form(body: bytes, content_type: str, max_files: int, max_fields: int) -> FormData:
    """A multipart/form-data ``body`` (whole) -> its fields; ``_FormError`` saying what is wrong."""
    _, params = parse_options_header(content_type)
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    if b"boundary" not in params:
        raise _FormError("Missing boundary in multipart.")
    parts = _Parts(charset, max_files, max_fields)
    callbacks = {name: getattr(parts, name) for name in (
        "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value", "on_header_end",
        "on_headers_finished")}
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError:
        raise _FormError("Invalid multipart data.") from None
    return FormData(parts.items)


def kind_of(request: Request, allowed: tuple[str, ...]) -> str:
    mt = media_type(request)
    if mt not in allowed:
        raise Unsupported(f"Content-Type must be one of {list(allowed)}, got {mt or 'none'!r}")
    return mt


async def files(form: FormData, field: str) -> list[tuple[str | None, bytes]]:
    out = []
    for v in form.getlist(field):
        if isinstance(v, Upload):
            out.append((v.filename, v.data))
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
