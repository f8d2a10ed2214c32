from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
TINY = TESTS / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_recipe() -> Path:
    return TINY


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory):
    """One real end-to-end build of the tiny recipe, shared by the tests that read its outputs."""
    from edgekd import build

    out = tmp_path_factory.mktemp("runs")
    return build(TINY, out=out, log=lambda m: None)
