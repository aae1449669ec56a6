"""cvtool: classical and deep vision pipelines from the shell and from Python.

Importing :mod:`cvtool` is cheap: it loads no OpenCV, torch, scikit-learn or
scikit-image.  Import the submodule you need (``cvtool.boxes``,
``cvtool.filters``, ``cvtool.datasets`` ...).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
