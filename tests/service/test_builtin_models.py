"""The server builds missing built-in models at start-up (in a child process: torch stays
out of the serving process) and serves them: EfficientNet-Lite0 on a photo of a cat."""

from __future__ import annotations

from pathlib import Path

import httpx

from live_server import copy_zoo, run_server, server_settings

ROOT = Path(__file__).resolve().parents[2]


def test_effnet_is_built_at_start_and_classifies_a_cat(tmp_path):
    zoo = copy_zoo(tmp_path / "zoo")  # the committed models; effnet-lite0-imagenet is missing
    s = server_settings(zoo, build_missing=True, warmup_sizes=[(224, 224)], threads=0)
    with run_server(s, timeout=900) as url:
        card = httpx.get(url + "/v1/models/effnet-lite0-imagenet").json()
        assert card["available"] and len(card["card"]["labels"]) == 1000
        photo = (ROOT / "docs" / "examples" / "chelsea.jpg").read_bytes()
        r = httpx.post(url + "/v1/models/effnet-lite0-imagenet/predict",
                       files=[("files", ("chelsea.jpg", photo, "image/jpeg"))], data={"top_k": "5"}, timeout=60)
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]
        # the card's size policy: shorter side to 224, aspect kept (300 * 224 / 200 = 336)
        assert res["input_size"] == [224, 336] and res["original_size"] == [200, 300]
        assert res["size_policy"] == "shorter side into [224, 224]"
        assert card["card"]["size_policy"] == {"shorter_side": [224, 224]}
        labels = " ".join(t["label"] for t in res["top"][:3])
        assert "cat" in labels, res["top"]
