"""AccessAI: a backend for selling AI features on prepaid credits."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("accessai")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
