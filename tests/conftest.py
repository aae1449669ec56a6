"""Shared fixtures: small real images from scikit-image/scikit-learn, temp folders, CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_COLOR", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def real_gray() -> np.ndarray:
    """scikit-image's 512x512 camera man, uint8 grey."""
    from skimage import data

    return data.camera()


@pytest.fixture(scope="session")
def real_color_bgr() -> np.ndarray:
    """scikit-image's astronaut (512x512) as uint8 BGR."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


@pytest.fixture(scope="session")
def china_bgr() -> np.ndarray:
    """scikit-learn's china.jpg (427x640) as uint8 BGR."""
    from sklearn.datasets import load_sample_image

    return np.ascontiguousarray(load_sample_image("china.jpg")[:, :, ::-1])


@pytest.fixture()
def cli():
    """Invoke the Typer app in-process: ``cli(['filter', ...]) -> Result``."""
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    runner = CliRunner()

    def invoke(args, **kwargs):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke
