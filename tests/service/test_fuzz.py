"""Schema-based fuzzing of every route: schemathesis's CLI against the running server,
with at least 2,000 generated cases (counted from its JSON report).

Every check runs: no 5xx, every response matches its documented schema, status code,
content type and headers; invalid data is rejected; 405s name the allowed methods.
"Schema-valid request rejected" (positive_data_acceptance) is off for the operations
below only, each for a reason a JSON schema cannot express (they answer 4xx with a
message instead). Fixed in the schema instead: /v2 ``datatype`` is an enum of the
Open Inference Protocol names it takes (an empty string was schema-valid).

- POST /v1/ops/{name}: the parameters are each op's own (GET /v1/ops/{name} gives
  their schema), ``return_indices`` / ``backward`` exist only for some ops, the input
  must be a rectangular list of numbers of 2 to 4 dimensions, and an upload must be an
  image Pillow decodes.
- POST /v1/models/{name}/predict and /embed: ``b64`` and the uploaded files must be
  image files (a schema can say "base64", not "a PNG").
- POST /v2/models/{name}/infer and /versions/{model_version}/infer: ``shape`` and
  ``data`` (or ``binary_data_size`` and the binary part) must agree, and input and output
  names are the model's (x, valid; its card's outputs).

The repository routes (``/v2/repository/...``: index, load, unload) change what the server
serves, so they are fuzzed against a server of their own (``test_the_repository_routes_keep_their_contract``);
there ``positive_data_acceptance`` is off for load and unload, whose name must be a model
folder on disk (a schema cannot list a directory).

Cheap routes get more examples than the POST routes that run ops and models; one worker
(schemathesis's parallel workers share Hypothesis state that is not thread-safe). About
30 s on 2 cores (about 2,700 cases); HYPOTHESIS_PROFILE=dev runs more.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from live_server import api, copy_zoo, run_server, server_settings, zoo_copy  # noqa: F401 - fixtures

DEV = os.environ.get("HYPOTHESIS_PROFILE") == "dev"
EXAMPLES, POST_EXAMPLES = (1000, 150) if DEV else (250, 50)
MIN_CASES = 2000

SCHEMA_VALID_BUT_REFUSED = [
    "/v1/ops/{name}",
    "/v1/models/{name}/predict",
    "/v1/models/{name}/embed",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{model_version}/infer",
]

CONFIG = f"""
[checks]
enabled = true

[[operations]]
include-method = "POST"
generation.max-examples = {POST_EXAMPLES}

[[operations]]
include-path = {json.dumps(SCHEMA_VALID_BUT_REFUSED)}
checks.positive_data_acceptance.enabled = false
"""


REPOSITORY = "^/v2/repository/"
REPOSITORY_REFUSED = ["/v2/repository/models/{name}/load", "/v2/repository/models/{name}/unload"]
REPOSITORY_CONFIG = f"""
[checks]
enabled = true

[[operations]]
include-path = {json.dumps(REPOSITORY_REFUSED)}
checks.positive_data_acceptance.enabled = false
"""


def _schemathesis(url: str, tmp_path: Path, config: str, examples: int, *filters: str) -> tuple[dict, str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    path = tmp_path / "schemathesis.toml"
    path.write_text(config)
    cmd = [exe, "--config-file", str(path), "run", f"{url}/openapi.json", "--max-examples", str(examples),
           "--seed", "1", "--generation-deterministic", "--request-timeout", "60", "--workers", "1",
           "--report", "json,junit", "--report-dir", str(tmp_path), *filters]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})
    assert out.returncode == 0, out.stdout[-12000:]
    report = json.loads(next(tmp_path.glob("json-*.json")).read_text())
    assert report["complete"] and not report["failures"] and not report["errors"], out.stdout[-12000:]
    return report, out.stdout


def test_every_route_keeps_its_contract(api, tmp_path):
    report, _ = _schemathesis(api, tmp_path, CONFIG, EXAMPLES, "--exclude-path-regex", REPOSITORY)
    assert report["test_cases"]["generated"] >= MIN_CASES, report["test_cases"]
    refused = {op.split(" ", 1)[1] for op in report["warnings"]["validation_mismatch"]}
    assert refused <= set(SCHEMA_VALID_BUT_REFUSED), refused


def test_the_repository_routes_keep_their_contract(tmp_path):
    zoo = copy_zoo(tmp_path / "zoo", ["digits-gap"])
    with run_server(server_settings(zoo)) as url:
        report, _ = _schemathesis(url, tmp_path, REPOSITORY_CONFIG, POST_EXAMPLES, "--include-path-regex", REPOSITORY)
    assert report["test_cases"]["generated"] >= 3 * POST_EXAMPLES // 2, report["test_cases"]
    refused = {op.split(" ", 1)[1] for op in report["warnings"]["validation_mismatch"]}
    assert refused <= set(REPOSITORY_REFUSED), refused
