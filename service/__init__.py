"""calsurr's online half: serves exported surrogates over the Open Inference Protocol. Never imports torch."""

from calsurr import __version__

__all__ = ["__version__"]
