"""Synthetic datasets and dataset tools behind ``cvtool prepare``.

* :mod:`~cvtool.prepare.sources` -- MNIST IDX files, scikit-learn digits, crop folders, backgrounds, splits
* :mod:`~cvtool.prepare.scenes` -- localisation and detection canvases (pure, seeded)
* :mod:`~cvtool.prepare.writer` -- chunked parallel rendering, PNG/COCO/.npz streaming output
* :mod:`~cvtool.prepare.synthetic` -- a whole dataset from a source
* :mod:`~cvtool.prepare.augment` -- box-aware augmentation
* :mod:`~cvtool.prepare.stats` -- dataset summaries
"""
