"""The shared benchmark report printer (poolops/report.py)."""

import sys

from poolops.report import command_line, print_report


def test_command_line_names_the_arguments_a_page_was_made_with(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/poolops", "bench", "serve", "--model", "effnet-lite0-imagenet",
                                      "--png", "docs/a b.png"])
    assert command_line("default") == "poolops bench serve --model effnet-lite0-imagenet --png 'docs/a b.png'"
    monkeypatch.setattr(sys, "argv", ["pytest", "-q"])  # not the poolops entry point: the caller's default
    assert command_line("poolops bench ops --markdown") == "poolops bench ops --markdown"


def test_markdown_report_has_title_command_table_targets_and_notes(capsys):
    print_report(title="t", made_by="poolops x", columns=["a", "b"], right={1}, rows=[(["1", "2"], False)],
                 header=["h"], targets=["met"], notes=["n"], markdown=True)
    out = capsys.readouterr().out
    assert out.startswith("# t\n\nMade by `poolops x`.\n\nh  \n")
    assert "| a | b |\n|---|---:|\n| 1 | 2 |" in out and "met" in out and "n" in out
