"""Evaluation: COCO and VOC detection metrics, single-object localisation, proposals, plots.

``coco``: :func:`~cvtool.eval.coco.evaluate_coco` (pycocotools' rules, vectorised);
``voc``: :func:`~cvtool.eval.voc.evaluate_voc` (all-point and 11-point AP);
``loc``: :func:`~cvtool.eval.loc.evaluate_localization`;
``proposals``: :func:`~cvtool.eval.proposals.evaluate_proposals`;
``plots``: PR-curve pictures (matplotlib, imported when called).
"""
