"""The calibration text shipped with the app, for importance matrices (resources/calibration).

Its own small module, free of numpy, so the Compress tab can name it without slowing the window's start."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

CALIBRATION_FILE = "calibration_mix.txt"


def default_calibration_path() -> Path:
    """The calibration text shipped with the app (resources/calibration, see its README)."""
    return Path(str(resources.files("resources").joinpath("calibration", CALIBRATION_FILE)))
