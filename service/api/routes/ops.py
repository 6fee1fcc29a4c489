"""The ops: list, describe, run (JSON, base64 raw tensors or image uploads in; JSON or .npy out)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask

from poolops.registry import OpSpec, get_op, list_ops
from poolops_service.api import bodies
from poolops_service.api.deps import EngineDep, SettingsDep, reservation
from poolops_service.api.errors import responses
from poolops_service.api.schemas import OpInfo, OpList, OpRequest, OpResponse
from poolops_service.codecs import answer, forms, images, tensors
from poolops_service.engine.errors import BadInput
from poolops_service.engine.sessions import release_memory
from poolops_service.engine.ops import find_op

router = APIRouter(prefix="/v1/ops", tags=["ops"])


def describe(spec: OpSpec) -> OpInfo:
    return OpInfo(
        name=spec.name, family=spec.family, doc=spec.doc, module=spec.module_name,
        inputs=list(spec.inputs), optional_inputs=list(spec.optional_inputs), outputs=list(spec.outputs),
        backward=spec.onnx_backward is not None, input_domain=spec.input_domain,
        params_schema=spec.params.model_json_schema(),
    )


@router.get("", response_model=OpList, summary="Every registered op with its parameter JSON schema")
async def ops() -> OpList:
    return OpList(ops=[describe(get_op(n)) for n in list_ops()])


@router.get("/{name}", response_model=OpInfo, responses=responses(404), summary="One op")
async def op(name: str) -> OpInfo:
    return describe(find_op(name))


_FORM = bodies.multipart_schema(
    {
        "image": {"type": "string", "format": "binary", "description": "an image file; becomes [1, C, H, W] in [0, 1]"},
        "color": {"type": "string", "enum": ["auto", "gray", "rgb"], "default": "auto",
                  "description": "auto: 1 channel for grayscale images, else 3"},
        "params": {"type": "string", "description": "the op's parameters as a JSON object", "default": "{}"},
        "return_indices": {"type": "boolean", "default": False},
        "backward": {"type": "boolean", "default": False},
    },
    ["image"],
)


@router.post(
    "/{name}",
    response_model=OpResponse,
    summary="Run an op",
    description=(
        "Input as a JSON nested list (2-D = one plane, 3-D = CHW, 4-D = NCHW; 1-D ops: L, CL or NCL; "
        "3-D ops: DHW, CDHW or NCDHW), as a base64 raw tensor "
        "with shape and dtype, or as an uploaded image (multipart). `Accept: application/x-npy` returns "
        "the tensor named by `tensor` as a .npy file."
    ),
    openapi_extra=bodies.body_doc(OpRequest, _FORM, "JSON (OpRequest) or multipart with an image"),
    responses={200: {"content": {bodies.NPY: {"schema": {"type": "string", "format": "binary"}}}},
               **responses(400, 404, 413, 415, 422, 503)},
)
async def run_op(
    name: str,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    tensor: Literal["output", "indices", "grad_input"] = Query(
        "output", description="which tensor a .npy response carries"
    ),
):
    spec = find_op(name)
    limit = settings.max_tensor_elements
    mt = bodies.kind_of(request, (bodies.JSON, bodies.MULTIPART))
    npy = bodies.NPY in request.headers.get("accept", "")
    if mt == bodies.JSON:
        req = await bodies.json_body(request, OpRequest, engine.offload, settings.max_json_elements)
        large = len(await request.body()) > bodies.INLINE_BYTES
        x, extra, grad = await engine.offload(tensors.op_arrays, req, limit, spec.spatial_dims, large=large)
        reservation(request).add(4 * (x.size + sum(v.size for v in extra.values())), "its tensors")
        params, want_indices, backward = req.params, req.return_indices, req.backward
    else:
        if spec.spatial_dims != 2:
            raise BadInput(f"{spec.name} takes x as [{', '.join(spec.x_dims)}], not an image: send it as JSON")
        form = await bodies.form_body(request, max_files=1)
        f = forms.image_op_form(form, await bodies.files(form, "image"))
        params, want_indices, backward, extra, grad = f.params, f.return_indices, f.backward, {}, None
        im = images.open_image(f.data, settings.max_image_pixels, f.what)  # the header only
        channels = images.channels_for(im, f.color)
        h, w = images.oriented_size(im)
        engine.precheck_op(  # every limit from the header's size, before decoding
            spec.name, (1, channels, h, w), None if npy else settings.max_json_elements,
            params=params, indices=want_indices, backward=backward,
        )
        reservation(request).add(4 * channels * h * w, "decoding its image")
        x = await engine.offload(images.to_nchw, im, channels, f.what, large=h * w > settings.inline_decode_pixels)
    res = await engine.run_op(
        spec.name, params=params, x=x, extra=extra, indices=want_indices, backward=backward, grad_output=grad,
        max_answer_elements=None if npy else settings.max_json_elements, reservation=reservation(request),
    )
    after = BackgroundTask(release_memory) if res.large else None  # once the answer is sent
    if npy:
        key = {"output": "y"}.get(tensor, tensor)
        if key not in res.outputs:
            raise BadInput(f"tensor={tensor} was not computed: ask for it (return_indices / backward)")
        a = res.outputs[key]
        body = await engine.offload(tensors.to_npy, a, large=a.size > LARGE_ANSWER)
        return Response(
            body, media_type=bodies.NPY, background=after,
            headers={"X-Poolops-Provider": res.provider, "X-Poolops-Shape": ",".join(map(str, a.shape))},
        )
    total = sum(a.size for a in res.outputs.values())
    body = await engine.offload(answer.op_answer, spec.name, res, large=total > LARGE_ANSWER)
    return Response(body, media_type="application/json", background=after)


LARGE_ANSWER = 64 * 1024  # numbers: larger answers are encoded in a worker thread
