"""calsurr's offline half (torch): physics data, surrogate training, calibration and export to ONNX."""

from calsurr import __version__

__all__ = ["__version__"]
