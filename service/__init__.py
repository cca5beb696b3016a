"""calsurr's online half: serves exported surrogates over the Open Inference Protocol. Never imports torch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("calsurr")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
