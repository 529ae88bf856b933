"""Shared fixtures: a fresh project in a temp folder, and small generated businesses."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadrefinery import Project

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = SHARED / "datasets"


@pytest.fixture
def project(tmp_path: Path):
    p = Project.init(tmp_path / "proj", name="test", write_key="test-key")
    yield p
    p.close()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
