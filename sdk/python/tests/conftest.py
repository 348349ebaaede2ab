"""Shared paths for the suite: the repository root, the vector files and the golden files."""

from __future__ import annotations

from pathlib import Path

import pytest

SDK_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = SDK_ROOT.parents[1]
VECTORS = REPO_ROOT / "tests" / "vectors" / "pcs-vectors.json"
VECTORS_SHA = REPO_ROOT / "tests" / "vectors" / "pcs-vectors.json.sha256"
AUDIT_VECTORS = REPO_ROOT / "tests" / "vectors" / "audit-vectors.json"
AUDIT_VECTORS_SHA = REPO_ROOT / "tests" / "vectors" / "audit-vectors.json.sha256"


def golden_dir() -> Path:
    """The golden PCS files: the repo's copy if present, else ``../shared/golden`` beside the repo."""
    for candidate in (REPO_ROOT / "tests" / "vectors" / "golden", REPO_ROOT.parent / "shared" / "golden"):
        if (candidate / "pcs_tiny_case_1.json").exists():
            return candidate
    raise FileNotFoundError("golden files not found in tests/vectors/golden or ../shared/golden")


@pytest.fixture(scope="session")
def golden() -> Path:
    return golden_dir()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: needs a running flk serve (FLK_GATEWAY_URL); see infra/scripts/sdk-integration.sh",
    )
