"""Build a whole synthetic dataset: choose a source, split its objects, plan and write every split.

Splits are made from disjoint sets of *objects* before any scene is composed
(:func:`cvtool.prepare.sources.split_objects`), so no digit of the test set
ever appears in a training scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvtool.errors import UsageError
from cvtool.prepare.scenes import SceneSettings
from cvtool.prepare.sources import (ObjectPool, load_backgrounds, load_crop_folder, load_mnist,
                                    load_sklearn_digits, split_objects)
from cvtool.prepare.writer import (OutputOptions, SplitPlan, prepare_out, write_classes, write_split,
                                   write_yolo_root)


@dataclass(frozen=True)
class SourceOptions:
    """Where objects come from (at most one of ``mnist``, ``fashion_mnist``, ``crops``)."""

    mnist: Path | None = None
    fashion_mnist: Path | None = None
    crops: Path | None = None
    threshold: float = 16.0
    backgrounds: Path | None = None


def load_source(opts: SourceOptions) -> tuple[ObjectPool, list[np.ndarray]]:
    """The object pool and background pictures the options name (default: scikit-learn digits)."""
    given = [n for n, v in (("--mnist", opts.mnist), ("--fashion-mnist", opts.fashion_mnist),
                            ("--crops", opts.crops)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} exclude each other; give one object source")
    if opts.mnist is not None:
        pool = load_mnist(opts.mnist)
    elif opts.fashion_mnist is not None:
        pool = load_mnist(opts.fashion_mnist, fashion=True)
    elif opts.crops is not None:
        pool = load_crop_folder(opts.crops, threshold=opts.threshold)
    else:
        pool = load_sklearn_digits()
    backgrounds = load_backgrounds(opts.backgrounds) if opts.backgrounds is not None else []
    return pool, backgrounds


def plan_splits(pool: ObjectPool, kind: str, *, fractions: tuple[float, float, float] | None,
                count: int | None, seed: int) -> list[SplitPlan]:
    """Split the objects, then decide how many scenes each split gets.

    Localisation without ``count``: one scene per object (MNIST: 60,000 + 10,000).
    Otherwise ``count`` scenes for train and, for val/test, ``count`` scaled
    by the split's share of objects (at least 1).  Localisation scenes take
    objects in a seeded random order, cycling when there are more scenes than objects.
    """
    if count is not None and count < 1:
        raise UsageError(f"--count {count}: expected >= 1")
    splits = split_objects(pool, fractions, seed=seed)
    n_train = len(splits["train"]) if "train" in splits else max(len(v) for v in splits.values())
    plans = []
    for name, idx in splits.items():
        sub = pool.take(idx)
        if count is None:
            n = len(idx) if kind == "localization" else max(1, int(round(1000 * len(idx) / n_train)))
        else:
            n = count if name == "train" else max(1, int(round(count * len(idx) / n_train)))
        order = None
        if kind == "localization":
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x10C, len(plans)]))
            reps = -(-n // len(idx))
            order = np.concatenate([rng.permutation(len(idx)) for _ in range(reps)])[:n]
        plans.append(SplitPlan(name, sub, n, order))
    return plans


def canvas_channels(pool: ObjectPool, backgrounds: list[np.ndarray]) -> int:
    """1 (grey) unless the objects or a background have colour."""
    if pool.channels == 3 or any(b.ndim == 3 for b in backgrounds):
        return 3
    return 1


def make_dataset(pool: ObjectPool, backgrounds: list[np.ndarray], settings: SceneSettings, *,
                 fractions: tuple[float, float, float] | None, count: int | None, seed: int,
                 opts: OutputOptions, progress=None) -> dict:
    """Write the dataset; return a summary ``{split: {"images": n, "boxes": m}, ...}``.

    ``progress(total)`` may return an ``advance(n)`` callback context (see the CLI).
    """
    settings.validate(pool)
    opts.validate()
    plans = plan_splits(pool, settings.kind, fractions=fractions, count=count, seed=seed)
    prepare_out(opts.out, [p.name for p in plans], npz=opts.npz, png=opts.png, overwrite=opts.overwrite)
    category_ids = np.arange(1, len(pool.class_names) + 1, dtype=np.int64)
    summary = {}
    for plan in plans:
        if progress is not None:
            with progress(plan.count, f"{settings.kind} {plan.name}") as advance:
                res = write_split(plan, settings, seed=seed, opts=opts, backgrounds=backgrounds,
                                  category_ids=category_ids, advance=advance)
        else:
            res = write_split(plan, settings, seed=seed, opts=opts, backgrounds=backgrounds,
                              category_ids=category_ids)
        summary[plan.name] = {"images": res.num_images, "boxes": int(res.boxes.shape[0]),
                              "objects": len(plan.pool)}
    write_classes(opts.out, pool.class_names)
    if opts.png and opts.format == "yolo":
        write_yolo_root(opts.out, pool.class_names)
    return summary
