"""calsurr: calibrated neural-network surrogates for particle physics, trained offline and served online.

One import name: the serving half is `calsurr.service` (no torch), the training half `calsurr.training` (torch);
their folders stay at the top of the source tree (`service/`, `training/`) and setuptools maps them here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("calsurr")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
