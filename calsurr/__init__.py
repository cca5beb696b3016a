"""calsurr: calibrated neural-network surrogates for particle physics, trained offline and served online."""

from service import __version__

__all__ = ["__version__"]
