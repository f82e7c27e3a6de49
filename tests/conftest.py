"""Shared fixtures: small seeded image batches, and a copy of the workflow to run Snakemake in."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def images32(rng):
    return rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def photos():
    """Smooth-ish 32 px images: blurred random fields, so triggers stand out as in photographs."""
    import torch

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, size=(320, 8, 8, 3))
    images = torch.nn.functional.interpolate(
        torch.from_numpy(base).permute(0, 3, 1, 2), size=(32, 32), mode="bicubic"
    )
    return images.clamp(0, 255).round().permute(0, 2, 3, 1).numpy().astype(np.uint8)


def _copy_workflow(folder: Path, config: dict) -> Path:
    """The workflow in ``folder`` (as a fresh clone has it) with ``config`` as its default config."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (
        "Snakefile",
        "rules",
        "workflow",
        "report",
        "profiles",
        "config",
        "environment.yml",
    ):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copy(source, folder / name)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture
def workflow_copy():
    """``workflow_copy(folder, config)``: a runnable copy of the workflow with that config."""
    return _copy_workflow
