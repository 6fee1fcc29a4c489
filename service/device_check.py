"""Checks a running server end to end on its device: ``python -m poolops_service.device_check URL``.

1. ``GET /v1/info``: the providers every session asked for and got.
2. Held-out digits at every size bucket of ``poolops experiments`` (PNG uploads, the card's
   size policy applied by the server) against the same images through ONNX Runtime on the
   CPU in this process: accuracy of each, and how often their answers agree.
3. scikit-image's photos through ``effnet-lite0-imagenet`` (when the server has it):
   top-1 label and probability.

It prints Markdown (``docs/gpu.md`` is made of its output on a GPU) and exits non-zero
when the server runs no model on the provider it was asked for, or when the server's
digits answers differ from the CPU's on more than 1% of images.
"""

from __future__ import annotations

import io
import json
import sys

import httpx
import numpy as np
from PIL import Image

AGREEMENT_TARGET = 0.99
N_SIZES, N_PER_SIZE = 6, 5  # per bucket: 30 held-out digits


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _top1(client: httpx.Client, model: str, data: bytes) -> tuple[str, float]:
    r = client.post(f"/v1/models/{model}/predict", files={"files": ("x.png", data, "image/png")})
    r.raise_for_status()
    best = r.json()["results"][0]["top"][0]
    return best["label"], float(best["probability"])


def digits_rows(client: httpx.Client, models_dir) -> list[str]:
    """Per bucket: server accuracy, CPU accuracy, agreement (held-out digits)."""
    import onnxruntime as ort

    from poolops_models import size_policy
    from poolops_models.experiments import BUCKETS, bucket_set
    from poolops_models.cards import load_registry
    from poolops_models.recipes import zoo_dir

    entry = load_registry(models_dir or zoo_dir())["digits-spp"]
    labels = list(entry.card.labels)
    cpu = ort.InferenceSession(str(entry.onnx_path), providers=["CPUExecutionProvider"])
    rows, worst_agree = [], 1.0
    for i, bucket in enumerate(BUCKETS):
        ok_srv = ok_cpu = agree = n = 0
        for x, y in bucket_set("digits", bucket, seed=2000 + i, n_sizes=N_SIZES, n_per_size=N_PER_SIZE):
            for im, label in zip(x, y):
                u8 = np.clip(np.rint(im[0] * 255), 0, 255).astype(np.uint8)
                srv, _ = _top1(client, "digits-spp", _png(u8))
                a = size_policy.apply((u8.astype(np.float32) / 255)[:, :, None], entry.card.size_policy, entry.card)
                feeds = {"x": np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)}
                if "valid" in [v.name for v in cpu.get_inputs()]:
                    feeds["valid"] = np.array([a.shape[:2]], np.int64)
                mine = labels[int(cpu.run(["logits"], feeds)[0].argmax())]
                ok_srv += srv == labels[label]
                ok_cpu += mine == labels[label]
                agree += srv == mine
                n += 1
        worst_agree = min(worst_agree, agree / n)
        rows.append(f"| {bucket[0]}-{bucket[1]} | {n} | {ok_srv / n:.3f} | {ok_cpu / n:.3f} | {agree / n:.3f} |")
    return rows, worst_agree


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    url = argv[0] if argv else "http://127.0.0.1:8000"
    models_dir = argv[1] if len(argv) > 1 else None
    failures: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/v1/info").json()
        eng = info["engine"]
        print("## Server\n")
        print("`GET /v1/info` (engine):\n")
        print("```json\n" + json.dumps({k: eng[k] for k in ("providers_available", "providers_requested",
                                                               "providers_in_use", "device", "onnxruntime")},
                                        indent=1) + "\n```\n")
        if eng["providers_in_use"] != [eng["providers_requested"][0]]:
            failures.append(f"sessions run on {eng['providers_in_use']}, asked for {eng['providers_requested']}")
        models = [m["name"] for m in client.get("/v1/models").json()["models"]]
        for m in models:
            status = client.get(f"/v1/models/{m}").json()
            print(f"- {m}: {json.dumps({k: status.get(k) for k in ('available', 'provider') if k in status})}")
        print()

        print("## Held-out digits through the server vs ONNX Runtime on the CPU\n")
        print(f"digits-spp, {N_SIZES * N_PER_SIZE} held-out digits per bucket (PNG, the card's size policy), "
              "same images and policy through a CPU session in the client\n")
        print("| shorter side | images | server accuracy | CPU accuracy | same answer |")
        print("|---|---:|---:|---:|---:|")
        rows, worst = digits_rows(client, models_dir)
        print("\n".join(rows) + "\n")
        if worst < AGREEMENT_TARGET:
            failures.append(f"digits answers agree with the CPU's on only {worst:.3f} of a bucket")

        if "effnet-lite0-imagenet" in models:
            from poolops_models.backbones.effnet_lite0 import sample_images

            print("## Photos through effnet-lite0-imagenet (size policy on)\n")
            print("| photo | size | top-1 | probability |")
            print("|---|---|---|---:|")
            for name, im in sample_images().items():
                label, prob = _top1(client, "effnet-lite0-imagenet", _png(np.asarray(im)))
                print(f"| {name} | {im.shape[1]}x{im.shape[0]} | {label.split(',')[0]} | {prob:.3f} |")
            print()
    for f in failures:
        print(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
