"""Datasets: one in-memory :class:`~cvtool.datasets.core.Dataset` and its file formats.

Readers and writers live one module per format (``coco``, ``yolo``, ``voc``,
``text``, ``results``); ``load_dataset`` picks by path.
"""

from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions, safe_join

__all__ = ["Category", "Dataset", "ImageRecord", "Predictions", "safe_join"]
