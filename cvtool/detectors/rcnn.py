"""R-CNN (Girshick et al. 2014) on cvtool's own selective-search proposals.

Pipeline
--------
1. **Proposals** -- :func:`cvtool.proposals.selective_search.selective_search`
   (``mode='fast'`` by default) per image; at training time they are computed
   once and cached in the run folder (``RUN/proposals/{split}.npz``, one array
   per image) and reused by every epoch and by ``--resume``.
2. **Warping** -- each box is enlarged so that, once warped (anisotropically,
   as in the paper) to ``warp_size x warp_size``, it carries ``context_pad``
   pixels of image context on every side (the paper's 16 px at 227); pixels
   outside the image are zero.  Implemented with ``affine_grid`` +
   ``grid_sample`` (bilinear), batched over boxes.
3. **Classifier** -- a small CNN (three conv/BN/ReLU pairs with 2x2 max
   pooling, a 256-unit fully connected feature layer) with a softmax over
   ``N + 1`` classes (index 0 = background) and class-specific box regression
   (``4 N`` outputs).
4. **Training sampling** -- proposals plus the ground-truth boxes; a box is
   foreground for its best-overlapping object when IoU >= 0.5, background when
   its best IoU is in [0.1, 0.5), ignored below 0.1; each mini-batch takes
   ``rois_per_image`` boxes per image of which at most ``fg_fraction``
   (default 0.25, the paper's 32 of 128) are foreground.
5. **Box regression** -- the R-CNN parametrisation
   ``dx = (Gx - Px) / Pw, dy = (Gy - Py) / Ph, dw = log(Gw / Pw), dh = log(Gh / Ph)``
   (centres and sizes), divided by ``(0.1, 0.1, 0.2, 0.2)``; smooth-L1 on the
   output of the object's class, for foreground boxes with IoU >= 0.6 (the
   paper's threshold for regression).  Unlike the paper (ridge regression on
   pool5 features after the fact) the regressor is trained jointly with the
   classifier, in the manner of Fast R-CNN.
6. **Detection** -- every (proposal, class) pair becomes a candidate with the
   softmax probability of that class and the class's regressed box; then
   :func:`cvtool.detections.postprocess` (clip, threshold, drop tiny,
   class-wise NMS, top-k).

The paper's per-class linear SVMs (``--svm``) are not implemented: the softmax
scores are used directly, as Fast R-CNN showed to be as good.

References
----------
R. Girshick, J. Donahue, T. Darrell, J. Malik. Rich feature hierarchies for
accurate object detection and semantic segmentation. CVPR 2014.
R. Girshick. Fast R-CNN. ICCV 2015 (joint training, smooth-L1, target scaling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cvtool.detectors.tensors import batch_tensor
from cvtool.errors import BadInputError

KIND = "rcnn"
BOX_STD = (0.1, 0.1, 0.2, 0.2)
FG_IOU = 0.5
BG_IOU_LOW = 0.1
REG_IOU = 0.6


# ---------------------------------------------------------------------------
# Box parametrisation
# ---------------------------------------------------------------------------


def encode_boxes(proposals: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """R-CNN regression targets ``(dx, dy, dw, dh)`` of ``targets`` relative to ``proposals``.

    Parameters
    ----------
    proposals, targets : (N, 4) float tensors, xyxy with positive widths and heights

    Returns
    -------
    (N, 4) tensor, not yet divided by :data:`BOX_STD`.
    """
    pw = proposals[:, 2] - proposals[:, 0]
    ph = proposals[:, 3] - proposals[:, 1]
    px = proposals[:, 0] + 0.5 * pw
    py = proposals[:, 1] + 0.5 * ph
    gw = targets[:, 2] - targets[:, 0]
    gh = targets[:, 3] - targets[:, 1]
    gx = targets[:, 0] + 0.5 * gw
    gy = targets[:, 1] + 0.5 * gh
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=1)


def decode_boxes(proposals: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: apply ``(..., 4)`` deltas to ``(N, 4)`` proposals.

    ``deltas`` may be ``(N, 4)`` or ``(N, K, 4)`` (one set per class); ``dw``
    and ``dh`` are clamped at ``log(1000 / 16)`` as in Fast R-CNN.
    """
    pw = proposals[:, 2] - proposals[:, 0]
    ph = proposals[:, 3] - proposals[:, 1]
    px = proposals[:, 0] + 0.5 * pw
    py = proposals[:, 1] + 0.5 * ph
    if deltas.dim() == 3:
        pw, ph, px, py = pw[:, None], ph[:, None], px[:, None], py[:, None]
    clamp = float(np.log(1000.0 / 16))
    cx = px + deltas[..., 0] * pw
    cy = py + deltas[..., 1] * ph
    w = pw * torch.exp(deltas[..., 2].clamp(max=clamp))
    h = ph * torch.exp(deltas[..., 3].clamp(max=clamp))
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from cvtool import boxes as box_ops

    return box_ops.iou(a, b)


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


@dataclass
class RoiLabels:
    """Labels of candidate boxes against the ground truth of one image.

    Attributes
    ----------
    labels : (N,) int64 -- class index + 1 for foreground, 0 background, -1 ignored
    matched : (N, 4) float -- the best-overlapping ground-truth box
    max_iou : (N,) float
    """

    labels: torch.Tensor
    matched: torch.Tensor
    max_iou: torch.Tensor


def label_rois(boxes: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, *, fg_iou: float = FG_IOU,
               bg_iou_low: float = BG_IOU_LOW) -> RoiLabels:
    """Foreground (IoU >= ``fg_iou``), background (IoU in ``[bg_iou_low, fg_iou)``), else ignored.

    Parameters
    ----------
    boxes : (N, 4) float tensor
    gt_boxes : (M, 4) float tensor
    gt_labels : (M,) int64 tensor of class indices (0-based)
    """
    n = boxes.shape[0]
    if gt_boxes.shape[0] == 0:
        labels = torch.zeros(n, dtype=torch.int64)
        return RoiLabels(labels=labels, matched=boxes.clone(), max_iou=torch.zeros(n))
    iou = _box_iou(boxes.float(), gt_boxes.float())  # (N, M)
    max_iou, best = iou.max(dim=1)
    labels = torch.full((n,), -1, dtype=torch.int64)
    labels[max_iou >= fg_iou] = gt_labels[best[max_iou >= fg_iou]].long() + 1
    labels[(max_iou >= bg_iou_low) & (max_iou < fg_iou)] = 0
    return RoiLabels(labels=labels, matched=gt_boxes[best].float(), max_iou=max_iou)


def sample_rois(roi_labels: RoiLabels, *, num: int, fg_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``num`` boxes, of which at most ``round(num * fg_fraction)`` are foreground.

    Foreground boxes are drawn first (without replacement); background boxes
    fill the rest; when there are too few background boxes, more foreground
    ones are not added (the batch is just smaller).
    """
    if not 0.0 <= fg_fraction <= 1.0:
        raise ValueError(f"fg_fraction must be in [0, 1], got {fg_fraction}")
    lab = roi_labels.labels.numpy()
    fg = np.flatnonzero(lab > 0)
    bg = np.flatnonzero(lab == 0)
    n_fg = min(len(fg), int(round(num * fg_fraction)))
    n_bg = min(len(bg), num - n_fg)
    return np.concatenate([rng.choice(fg, n_fg, replace=False), rng.choice(bg, n_bg, replace=False)]).astype(np.int64)


# ---------------------------------------------------------------------------
# Warping with context
# ---------------------------------------------------------------------------


def context_boxes(boxes: torch.Tensor, *, warp_size: int, context_pad: int) -> torch.Tensor:
    """Enlarge boxes so that, warped to ``warp_size``, the original occupies the central
    ``warp_size - 2 * context_pad`` pixels (R-CNN's context padding)."""
    if not 0 <= 2 * context_pad < warp_size:
        raise ValueError(f"context_pad must be in [0, {(warp_size - 1) // 2}] for warp_size {warp_size}, got {context_pad}")
    scale = warp_size / (warp_size - 2 * context_pad)
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return torch.cat([c - half, c + half], dim=1)


def warp_regions(images: torch.Tensor, image_index: torch.Tensor, boxes: torch.Tensor, *, warp_size: int,
                 context_pad: int) -> torch.Tensor:
    """Crop-and-warp boxes (with context) to ``(R, C, warp_size, warp_size)``.

    Parameters
    ----------
    images : (B, C, H, W) float tensor
    image_index : (R,) int64 tensor -- which image each box is in
    boxes : (R, 4) float tensor, xyxy pixels of that image
    """
    r = boxes.shape[0]
    c, h, w = images.shape[1:]
    if r == 0:
        return images.new_zeros((0, c, warp_size, warp_size))
    cb = context_boxes(boxes.float(), warp_size=warp_size, context_pad=context_pad)
    # normalised coords (align_corners=False): x_n = 2 * x / W - 1 for pixel-edge x
    x1 = 2 * cb[:, 0] / w - 1
    x2 = 2 * cb[:, 2] / w - 1
    y1 = 2 * cb[:, 1] / h - 1
    y2 = 2 * cb[:, 3] / h - 1
    theta = torch.zeros((r, 2, 3), dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = (x2 - x1) / 2
    theta[:, 0, 2] = (x2 + x1) / 2
    theta[:, 1, 1] = (y2 - y1) / 2
    theta[:, 1, 2] = (y2 + y1) / 2
    grid = F.affine_grid(theta, [r, c, warp_size, warp_size], align_corners=False)
    src = images.index_select(0, image_index.to(images.device))
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RCNNConfig:
    """Architecture settings (stored in the checkpoint).

    Attributes
    ----------
    num_classes : int -- object classes (background is extra)
    in_channels : int -- 1 (grey) or 3 (BGR)
    warp_size : int -- side of the warped region, a multiple of 8
    context_pad : int -- context pixels on each side at warp size
    width : int -- channels of the first conv stage (then 2x, 4x)
    """

    num_classes: int
    in_channels: int = 1
    warp_size: int = 32
    context_pad: int = 4
    width: int = 32

    def __post_init__(self) -> None:
        """Every setting checked against its range, and the network's size, before anything is built."""
        from cvtool.detectors.limits import MAX_CLASSES, MAX_WARP, MAX_WIDTH, check_network_size, int_setting

        object.__setattr__(self, "num_classes", int_setting("num_classes", self.num_classes, 1, MAX_CLASSES))
        object.__setattr__(self, "in_channels", int_setting("in_channels", self.in_channels, 1, 3))
        if self.in_channels == 2:
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        object.__setattr__(self, "warp_size", int_setting("warp_size", self.warp_size, 16, MAX_WARP))
        if self.warp_size % 8:
            raise ValueError(f"warp_size must be a multiple of 8 and >= 16, got {self.warp_size}")
        object.__setattr__(self, "context_pad", int_setting("context_pad", self.context_pad, 0,
                                                            (self.warp_size - 1) // 2))
        object.__setattr__(self, "width", int_setting("width", self.width, 4, MAX_WIDTH))
        check_network_size(lambda: RCNNNet(self), f"width {self.width} and warp_size {self.warp_size}")


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class RCNNNet(nn.Module):
    """Region classifier: ``(R, C, S, S)`` warps -> ``(logits (R, N+1), deltas (R, N, 4))``."""

    def __init__(self, config: RCNNConfig) -> None:
        super().__init__()
        w = config.width
        self.config = config
        self.features = nn.Sequential(
            _conv_bn(config.in_channels, w), _conv_bn(w, w), nn.MaxPool2d(2),
            _conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * w * (config.warp_size // 8) ** 2, 256), nn.ReLU(inplace=True), nn.Dropout(0.3),
        )
        self.cls = nn.Linear(256, config.num_classes + 1)
        self.reg = nn.Linear(256, 4 * config.num_classes)
        nn.init.normal_(self.reg.weight, std=0.001)
        nn.init.zeros_(self.reg.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.cls(f), self.reg(f).view(-1, self.config.num_classes, 4)


def rcnn_loss(logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor, reg_targets: torch.Tensor,
              reg_mask: torch.Tensor, *, box_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Cross-entropy over N+1 classes plus smooth-L1 on the object's class deltas.

    Parameters
    ----------
    logits : (R, N+1); deltas : (R, N, 4); labels : (R,) in [0, N] (0 background)
    reg_targets : (R, 4) already divided by :data:`BOX_STD`
    reg_mask : (R,) bool -- boxes that take the regression loss (foreground, IoU >= 0.6)
    """
    loss_cls = F.cross_entropy(logits.float(), labels)
    if reg_mask.any():
        idx = torch.nonzero(reg_mask).squeeze(1)
        pred = deltas[idx, labels[idx] - 1].float()
        loss_box = F.smooth_l1_loss(pred, reg_targets[idx], beta=1.0, reduction="sum") / max(labels.shape[0], 1)
    else:
        loss_box = deltas.sum() * 0.0
    return {"loss": loss_cls + box_weight * loss_box, "cls": loss_cls.detach(), "box": loss_box.detach()}


# ---------------------------------------------------------------------------
# Proposals
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalSettings:
    """Selective-search settings used for training and detection (stored in the checkpoint)."""

    mode: str = "fast"
    min_size: float = 6.0
    max_proposals: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        from cvtool.detectors.limits import float_setting, int_setting

        if self.mode not in ("single", "fast", "quality"):
            raise ValueError(f"proposal mode {str(self.mode)[:40]!r} is not one of single, fast, quality")
        object.__setattr__(self, "min_size", float_setting("proposal min_size", self.min_size, 0.0, 1e4))
        object.__setattr__(self, "max_proposals", int_setting("max_proposals", self.max_proposals, 1, 100_000))
        object.__setattr__(self, "seed", int_setting("proposal seed", self.seed, -(2**63), 2**63 - 1))


def propose(image: np.ndarray, settings: ProposalSettings) -> np.ndarray:
    """Selective-search boxes ``(N, 4)`` float32 for one uint8 image (rank order)."""
    from cvtool.proposals.selective_search import selective_search

    res = selective_search(image, mode=settings.mode, min_size=settings.min_size,
                           max_proposals=settings.max_proposals, seed=settings.seed)
    boxes = np.asarray(res.boxes, dtype=np.float32).reshape(-1, 4)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep]


def _propose_many(images: Sequence[np.ndarray], settings: ProposalSettings) -> list[np.ndarray]:
    return [propose(im, settings) for im in images]


def proposals_for(images: Sequence[np.ndarray], settings: ProposalSettings, *, jobs: int = 1) -> list[np.ndarray]:
    """Selective search over many images, in ``jobs`` processes (chunks keep start-up cheap)."""
    n = len(images)
    if jobs <= 1 or n < 16:
        return _propose_many(images, settings)
    import os

    from joblib import Parallel, delayed

    from cvtool.workers import call_watched

    chunk = max(8, -(-n // (jobs * 4)))
    parent = os.getpid()  # workers stop when this process dies (no orphans after SIGKILL)
    parts = Parallel(n_jobs=jobs, backend="loky")(
        delayed(call_watched)(_propose_many, parent, list(images[s:s + chunk]), settings)
        for s in range(0, n, chunk))
    return [b for part in parts for b in part]


def cached_proposals(cache: Path, images: Sequence[np.ndarray], settings: ProposalSettings, *,
                     jobs: int = 1) -> list[np.ndarray]:
    """Proposals for ``images``, read from ``cache`` (an ``.npz``) when its settings match, else computed and saved.

    The file holds ``settings`` (a JSON string), ``count`` and one array
    ``p{i}`` per image; it is written atomically and read without pickle.
    """
    import json

    from cvtool.io.atomic import atomic_open

    key = json.dumps(asdict(settings), sort_keys=True)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["settings"]) == key and int(z["count"]) == len(images):
                    return [z[f"p{i}"].astype(np.float32) for i in range(len(images))]
        except (OSError, ValueError, KeyError):
            pass  # stale or corrupt cache: recompute
    boxes = proposals_for(images, settings, jobs=jobs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"p{i}": b for i, b in enumerate(boxes)}
    with atomic_open(cache, "wb", overwrite=True) as fh:
        np.savez_compressed(fh, settings=np.array(key), count=np.array(len(images)), **arrays)
    return boxes


# ---------------------------------------------------------------------------
# The detector object (the protocol of cvtool.detectors)
# ---------------------------------------------------------------------------


class RCNNDetector:
    """A trained R-CNN: selective search, warp, classify, regress, post-process."""

    kind = KIND

    def __init__(self, net: RCNNNet, *, classes: list[str], category_ids: list[int], proposals: ProposalSettings,
                 device: Any = "cpu", score_threshold: float = 0.05, iou_threshold: float = 0.5,
                 rois_per_batch: int = 2048) -> None:
        self.net = net.eval()
        self.classes = list(classes)
        self.category_ids = [int(c) for c in category_ids]
        self.proposal_settings = proposals
        self.device = torch.device(device)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.rois_per_batch = rois_per_batch

    @torch.inference_mode()
    def classify(self, images: Sequence[np.ndarray], proposals: Sequence[np.ndarray], *,
                 score_threshold: float | None = None, iou_threshold: float | None = None,
                 max_detections: int = 100) -> list[Any]:
        """Detections for images whose proposals are given (``(N_i, 4)`` each)."""
        from cvtool.detections import postprocess

        st = self.score_threshold if score_threshold is None else score_threshold
        it = self.iou_threshold if iou_threshold is None else iou_threshold
        cfg = self.net.config
        k = cfg.num_classes
        std = torch.tensor(BOX_STD, device=self.device)
        out = []
        for im, props in zip(images, proposals):
            h, w = im.shape[:2]
            x = batch_tensor([im], channels=cfg.in_channels, multiple=1, device=self.device)
            p = torch.as_tensor(np.asarray(props, np.float32).reshape(-1, 4), device=self.device)
            probs, boxes = [], []
            for s in range(0, p.shape[0], self.rois_per_batch):
                pb = p[s:s + self.rois_per_batch]
                warps = warp_regions(x, torch.zeros(pb.shape[0], dtype=torch.int64, device=self.device), pb,
                                     warp_size=cfg.warp_size, context_pad=cfg.context_pad)
                logits, deltas = self.net(warps)
                probs.append(torch.softmax(logits.float(), dim=1)[:, 1:])
                boxes.append(decode_boxes(pb, deltas.float() * std))
            if probs:
                sc = torch.cat(probs).reshape(-1).cpu()
                bx = torch.cat(boxes).reshape(-1, 4).cpu()
                lab = torch.arange(k).repeat(p.shape[0])
            else:
                sc, bx, lab = torch.zeros(0), torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64)
            out.append(postprocess(bx, sc, lab, image_size=(w, h), score_threshold=st, iou_threshold=it,
                                   max_detections=max_detections))
        return out

    def predict(self, images: Sequence[np.ndarray], *, score_threshold: float | None = None,
                iou_threshold: float | None = None, max_detections: int = 100) -> list[Any]:
        """Detect objects in uint8 grey/BGR images: proposals, then :meth:`classify`."""
        props = [propose(im, self.proposal_settings) for im in images]
        return self.classify(images, props, score_threshold=score_threshold, iou_threshold=iou_threshold,
                             max_detections=max_detections)


def build_detector(state: dict[str, Any], *, device: Any = "cpu") -> RCNNDetector:
    """A detector from a checkpoint dictionary (``model_config``, ``model``, ``classes``, ``category_ids``)."""
    try:
        cfg = state["model_config"]
        config = RCNNConfig(**cfg["model"])
        settings = ProposalSettings(**cfg["proposals"])
        net = RCNNNet(config)
        net.load_state_dict(state["model"])
        classes, category_ids = list(state["classes"]), [int(c) for c in state["category_ids"]]
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise BadInputError(f"not a valid rcnn checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if len(classes) != config.num_classes or len(category_ids) != config.num_classes:
        raise BadInputError(f"rcnn checkpoint has {len(classes)} class names for {config.num_classes} classes")
    net.to(torch.device(device))
    return RCNNDetector(net, classes=classes, category_ids=category_ids, proposals=settings, device=device)


def load(path: str | Path, *, device: str = "auto") -> RCNNDetector:
    """Load an R-CNN detector from ``weights/best.pt`` (or a run folder); never unpickles."""
    from cvtool.detectors.training import read_detector_checkpoint

    state, dev = read_detector_checkpoint(path, KIND, device)
    return build_detector(state, device=dev)


# ---------------------------------------------------------------------------
# Training (a Task for cvtool.runner.loop.fit)
# ---------------------------------------------------------------------------


class RCNNTask:
    """R-CNN as a :class:`cvtool.runner.loop.Task`.

    Proposals of the training and validation images are computed once
    (``jobs`` processes) and cached under ``cache_dir``; every candidate box
    (proposals plus ground truth) is labelled once with :func:`label_rois`;
    each training step samples ``rois_per_image`` boxes per image with
    :func:`sample_rois` and warps them on the device.

    Parameters
    ----------
    data : DetectionData
    cache_dir : Path
        ``RUN/proposals``.
    proposals : ProposalSettings
    width, warp_size, context_pad : see :class:`RCNNConfig`
    rois_per_image : int
    fg_fraction : float
    box_weight : float
    jobs : int
        Processes for selective search.
    """

    kind = KIND

    def __init__(self, data: Any, *, cache_dir: Path, proposals: ProposalSettings | None = None, width: int = 16,
                 warp_size: int = 32, context_pad: int = 4, rois_per_image: int = 16, fg_fraction: float = 0.25,
                 box_weight: float = 1.0, jobs: int = 1, data_path: str = "", in_channels: int | None = None,
                 max_train: int | None = None, val_split: str = "val", max_val: int | None = None,
                 log: Any = None) -> None:
        from cvtool.detectors.tensors import channels_of

        if rois_per_image < 1:
            raise ValueError(f"rois_per_image must be >= 1, got {rois_per_image}")
        if not 0.0 < fg_fraction <= 1.0:
            raise ValueError(f"fg_fraction must be in (0, 1], got {fg_fraction}")
        self.data = data
        self.classes = list(data.classes)
        self.category_ids = list(data.category_ids)
        channels = in_channels if in_channels is not None else channels_of(data.train.images[:64])
        self.config = RCNNConfig(num_classes=len(self.classes), in_channels=channels, warp_size=warp_size,
                                 context_pad=context_pad, width=width)
        self.proposals = proposals or ProposalSettings()
        self.rois_per_image = rois_per_image
        self.fg_fraction = fg_fraction
        self.box_weight = box_weight
        self.data_path = data_path
        self.max_train = max_train
        self.val_split, self.max_val = val_split, max_val  # recorded so --resume scores the same images
        self._seed = 0
        if log is not None:
            log(f"selective search on {len(data.train)} train + {len(data.val)} val images "
                f"(cached in {cache_dir})")
        train_props = cached_proposals(Path(cache_dir) / "train.npz", list(data.train.images), self.proposals,
                                       jobs=jobs)
        self.val_proposals = cached_proposals(Path(cache_dir) / "val.npz", list(data.val.images), self.proposals,
                                              jobs=jobs)
        self.candidates: list[tuple[torch.Tensor, RoiLabels]] = []
        for props, gt, lab in zip(train_props, data.train.boxes, data.train.labels):
            g = torch.from_numpy(np.asarray(gt, np.float32).reshape(-1, 4))
            boxes = torch.cat([torch.from_numpy(props), g])
            self.candidates.append((boxes, label_rois(boxes, g, torch.from_numpy(np.asarray(lab, np.int64)))))

    def model_config(self) -> dict[str, Any]:
        return {"model": asdict(self.config), "proposals": asdict(self.proposals)}

    def task_config(self) -> dict[str, Any]:
        return {"data": self.data_path, "max_train": self.max_train, "rois_per_image": self.rois_per_image,
                "fg_fraction": self.fg_fraction, "box_weight": self.box_weight, "val_split": self.val_split,
                "max_val": self.max_val}

    def build_model(self) -> nn.Module:
        return RCNNNet(self.config)

    def train_batches(self, env: Any, *, batch_size: int, seed: int) -> Any:
        from cvtool.detectors.tensors import to_channels
        from cvtool.runner.data import SampleDraws, TensorBatches

        self._seed = seed
        imgs = np.stack([to_channels(im, self.config.in_channels) for im in self.data.train.images])
        base = TensorBatches({"images": torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()},
                             batch_size=batch_size, seed=seed, ctx=env.dist, device=env.device)
        return SampleDraws(base, n=len(imgs), k=0, seed=seed)  # adds "epoch" for the RoI sampling seed

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], env: Any):
        from cvtool.runner.data import draw_seed

        x = batch["images"].float() / 255.0
        which, boxes, labels, targets, reg = [], [], [], [], []
        std = torch.tensor(BOX_STD)
        epoch = int(batch["epoch"][0]) if "epoch" in batch else 0
        for j, i in enumerate(batch["index"].tolist()):
            cand, rl = self.candidates[i]
            # RoIs drawn from (seed, epoch, image index) only: a resumed run draws what the
            # uninterrupted run drew, with no generator state to save
            rng = np.random.default_rng(draw_seed(self._seed, epoch, i))
            sel = torch.from_numpy(sample_rois(rl, num=self.rois_per_image, fg_fraction=self.fg_fraction,
                                               rng=rng))
            which.append(torch.full((sel.numel(),), j, dtype=torch.int64))
            boxes.append(cand[sel])
            labels.append(rl.labels[sel])
            targets.append(encode_boxes(cand[sel], rl.matched[sel]) / std)
            reg.append((rl.labels[sel] > 0) & (rl.max_iou[sel] >= REG_IOU))
        dev = x.device
        which_t, boxes_t, labels_t, targets_t, reg_t = (torch.cat(v).to(dev) for v in
                                                        (which, boxes, labels, targets, reg))
        warps = warp_regions(x, which_t, boxes_t, warp_size=self.config.warp_size,
                             context_pad=self.config.context_pad)
        logits, deltas = model(env.images(warps))
        parts = rcnn_loss(logits, deltas, labels_t, targets_t, reg_t, box_weight=self.box_weight)
        return parts["loss"], {k: v for k, v in parts.items() if k != "loss"}

    def evaluate(self, model: nn.Module, env: Any) -> dict[str, float]:
        from cvtool.detectors.training import coco_scores

        if len(self.data.val) == 0:
            return {"score": 0.0}
        det = RCNNDetector(model, classes=self.classes, category_ids=self.category_ids, proposals=self.proposals,
                           device=env.device)
        dets = det.classify(list(self.data.val.images), self.val_proposals)
        scores = coco_scores(dets, self.data.val, num_classes=len(self.classes), class_names=self.classes)
        return {**scores, "score": scores["AP"]}
