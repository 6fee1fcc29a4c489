"""Schema-based fuzzing of every route: schemathesis's CLI against the running server.

Its checks: no 5xx, every response matches its documented schema, status code, content
type and headers; invalid data is rejected. Left out: positive_data_acceptance, since
a schema cannot say "bytes Pillow decodes" or "a JSON object in a text form field", so
schema-valid random bytes are rightly refused (415/422 with a message). Bounded to a few
examples per operation (HYPOTHESIS_PROFILE=dev for more); the report is kept on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from live_server import api, zoo_copy  # noqa: F401 - fixtures

EXAMPLES = 200 if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else 25


def test_every_route_keeps_its_contract(api, tmp_path):
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    cmd = [exe, "run", f"{api}/openapi.json", "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--max-examples", str(EXAMPLES),
           "--seed", "1", "--generation-deterministic", "--request-timeout", "60", "--workers", "1",
           "--report", "junit", "--report-dir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})
    assert out.returncode == 0, out.stdout[-12000:]
