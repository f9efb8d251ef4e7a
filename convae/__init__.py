"""convae: a command-line image codec toolkit built on convolutional autoencoders."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("convae")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
