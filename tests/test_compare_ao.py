"""benchmarks/compare_ao.py: paired AO differences between two tracked_ao.py results, per set
and pooled, checked against values computed by hand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_ao.py"
spec = importlib.util.spec_from_file_location("compare_ao", SCRIPT)
compare_ao = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_ao)


def _write(path: Path, per_sequence: dict) -> str:
    path.write_text(json.dumps({"per_sequence": per_sequence}))
    return str(path)


def _rows(out: str) -> dict[str, float]:
    """The printed differences by set name."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0] in "+-" and parts[1].startswith("["):
            rows[" ".join(parts[4:])] = float(parts[0])
    return rows


def test_differences_per_set_and_pooled_by_frames(tmp_path, monkeypatch, capsys) -> None:
    a = _write(
        tmp_path / "a.json",
        {
            "s1": {"x": {"ao": 0.8, "frames": 100}, "y": {"ao": 0.5, "frames": 100}},
            "s2": {"z": {"ao": 0.6, "frames": 50}},
        },
    )
    b = _write(
        tmp_path / "b.json",
        {
            "s1": {"x": {"ao": 0.7, "frames": 100}, "y": {"ao": 0.5, "frames": 100}},
            "s2": {"z": {"ao": 0.7, "frames": 50}},
        },
    )
    monkeypatch.setattr(sys, "argv", ["compare_ao", a, b, "--pool", "s1", "s2"])
    compare_ao.main()
    rows = _rows(capsys.readouterr().out)
    # s1: (0.1 * 100 + 0) / 200; s2: -0.1; pooled: (10 - 5) / 250 frames
    assert rows == pytest.approx({"s1": 0.05, "s2": -0.1, "s1 + s2": 0.02})


def test_an_old_file_without_sequences_is_named(tmp_path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"runs/x": 0.5}))
    with pytest.raises(ValueError, match=r"old\.json"):
        compare_ao.per_sequence(str(old))


def test_a_pool_naming_a_set_missing_from_a_file_is_refused(tmp_path, monkeypatch, capsys) -> None:
    a = _write(tmp_path / "a.json", {"s1": {"x": {"ao": 0.8, "frames": 10}}})
    b = _write(tmp_path / "b.json", {"s1": {"x": {"ao": 0.7, "frames": 10}}, "s2": {}})
    monkeypatch.setattr(sys, "argv", ["compare_ao", a, b, "--pool", "s1", "s2"])
    with pytest.raises(SystemExit):
        compare_ao.main()
    captured = capsys.readouterr()
    assert "not in both files: s2" in captured.err
    assert "A − B" not in captured.out  # refused before any row is printed
