"""Image filtering operations (``cvtool filter``).

* :mod:`cvtool.filters.ops` -- the pure operations (NumPy/OpenCV).
* :mod:`cvtool.filters.dtypes` -- dtype, rounding and alpha rules.
* :mod:`cvtool.filters.parse` -- operation strings -> validated steps; the pipeline.
"""

from cvtool.filters.parse import OPERATIONS, Step, apply_pipeline, parse_operation, parse_pipeline

__all__ = ["OPERATIONS", "Step", "apply_pipeline", "parse_operation", "parse_pipeline"]
