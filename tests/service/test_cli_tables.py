"""``poolops ops`` and ``poolops models list`` fit 80 columns (every op and model name
whole, nothing cut) and offer ``--json``; the probe filter of ``poolops serve``'s log."""

from __future__ import annotations

import json
import logging

import pytest

from poolops.registry import list_ops
from poolops_service.cli import main
from poolops_service.logs import QuietProbes, log_config


@pytest.mark.parametrize("argv", [["ops"], ["models", "list"]])
def test_tables_fit_80_columns(argv, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    if argv == ["ops"]:
        names = {line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")} - {""}
        assert set(list_ops()) <= names  # every name whole, in its own cell
        assert "kernel=[2, 2]" in out


def test_ops_json(capsys):
    assert main(["ops", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["op"] for r in rows] == list_ops()
    by = {r["op"]: r for r in rows}
    assert by["max"]["parameters"]["kernel"] == [2, 2] and by["max"]["outputs"] == ["y", "indices"]


def test_models_list_json(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["digits-spp"]["status"] == "ready" and rows["digits-spp"]["metrics"]["accuracy_seen_sizes"] > 0.9


def test_probe_access_lines_are_dropped():
    def record(path):
        return logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                                 ("127.0.0.1:1", "GET", path, "1.1", 503), None)

    f = QuietProbes()
    assert not f.filter(record("/readyz")) and not f.filter(record("/healthz?x=1"))
    assert f.filter(record("/v1/ops/max"))
    cfg = log_config("info")
    assert "quiet_probes" in cfg["handlers"]["access"]["filters"] and cfg["loggers"]["poolops"]["level"] == "INFO"
