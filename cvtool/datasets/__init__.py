"""Datasets: one in-memory :class:`~cvtool.datasets.core.Dataset` and its file formats.

Readers and writers live one module per format (``coco``, ``yolo``, ``voc``,
``text``, ``results``); :func:`load_dataset` picks by path.
"""

from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions, safe_join
from cvtool.datasets.loader import DATASET_FORMATS, detect_format, load_dataset

__all__ = ["Category", "Dataset", "ImageRecord", "Predictions", "safe_join", "load_dataset", "detect_format",
           "DATASET_FORMATS"]
