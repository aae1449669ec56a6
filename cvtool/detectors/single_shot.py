"""The single-shot detector: anchor-free, centre-based, one pass of a small CNN.

Design (in the manner of FCOS, Tian et al. 2019, on one output level):

* **Network** -- a plain conv/BN/ReLU backbone to stride 16 (widths w, 2w,
  4w, 8w), a top-down feature pyramid back to stride 4 (lateral 1x1 convs,
  nearest upsampling, 3x3 smoothing), and one head at stride 4 with three
  outputs per location: ``C`` class logits, 4 box distances ``(l, t, r, b)``
  and one centre-ness logit.  Inputs of any size are padded (bottom/right) to
  a multiple of 16; boxes are unaffected by that padding.
* **Target assignment** -- location ``(i, j)`` sits at pixel
  ``((j + 0.5) s, (i + 0.5) s)`` with ``s = 4``.  It is positive for an
  object when it lies inside the box and inside the box's central region
  (``center_fraction`` of its width and height, at least half a stride each
  way); each object also claims the location nearest its centre, so small
  objects are never lost.  A location claimed by several objects takes the
  smallest.  Targets: one-hot class, the object's box, and the centre-ness
  ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))``.
* **Box parametrisation** -- ``(l, t, r, b) = s * exp(d)`` from the raw
  outputs ``d``; :func:`encode_distances` and :func:`decode_distances` are
  exact inverses.
* **Losses** -- sigmoid focal loss (alpha 0.25, gamma 2) over all locations
  and classes, normalised by the number of positives; ``1 - GIoU`` over the
  positives weighted by their centre-ness target (GIoU from
  :func:`cvtool.boxes.giou`); binary cross-entropy on centre-ness over the
  positives.  Total = focal + ``box_weight`` * GIoU + centre-ness.
* **Decoding** -- score = ``sqrt(sigmoid(class) * sigmoid(centre-ness))``;
  the best ``pre_nms_top_k`` (default 100) (location, class) pairs above the threshold go to
  :func:`cvtool.detections.postprocess` (clip, threshold, drop tiny, class-wise
  NMS, top-k).

References
----------
Tian, Shen, Chen, He. FCOS: Fully Convolutional One-Stage Object Detection. ICCV 2019.
Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. ICCV 2017.
Rezatofighi et al. Generalized Intersection over Union. CVPR 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cvtool.detectors.tensors import batch_tensor, group_by_size
from cvtool.errors import BadInputError

KIND = "single-shot"
STRIDE = 4
PAD_MULTIPLE = 16


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SingleShotConfig:
    """Architecture and assignment settings (stored in the checkpoint).

    Attributes
    ----------
    num_classes : int
        Object classes (no background class: classification is per-class sigmoid).
    in_channels : int
        1 (grey) or 3 (BGR).
    width : int
        Channels of the first stage; later stages use 2x, 4x, 8x.
    center_fraction : float
        Fraction of each box's width and height, around its centre, whose
        locations are positives.
    """

    num_classes: int
    in_channels: int = 1
    width: int = 16
    center_fraction: float = 0.5

    def __post_init__(self) -> None:
        """Every setting checked against its range, and the network's size, before anything is built."""
        from cvtool.detectors.limits import MAX_CLASSES, MAX_WIDTH, check_network_size, float_setting, int_setting

        object.__setattr__(self, "num_classes", int_setting("num_classes", self.num_classes, 1, MAX_CLASSES))
        object.__setattr__(self, "in_channels", int_setting("in_channels", self.in_channels, 1, 3))
        if self.in_channels == 2:
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        object.__setattr__(self, "width", int_setting("width", self.width, 4, MAX_WIDTH))
        object.__setattr__(self, "center_fraction",
                           float_setting("center_fraction", self.center_fraction, 0.0, 1.0, lo_open=True))
        check_network_size(lambda: SingleShotNet(self), f"width {self.width} with {self.num_classes} classes")


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SingleShotNet(nn.Module):
    """Backbone to stride 16, top-down pyramid to stride 4, one dense head.

    ``forward(x)`` takes ``(B, C_in, H, W)`` with ``H, W`` multiples of 16 and
    returns ``(cls (B, K, H/4, W/4), dist (B, 4, H/4, W/4), ctr (B, 1, H/4, W/4))``
    raw outputs (logits and log-distances in units of the stride).
    """

    def __init__(self, config: SingleShotConfig) -> None:
        super().__init__()
        w = config.width
        self.config = config
        self.stage1 = nn.Sequential(_conv_bn(config.in_channels, w, 2), _conv_bn(w, w))  # /2
        self.stage2 = nn.Sequential(_conv_bn(w, 2 * w, 2), _conv_bn(2 * w, 2 * w))  # /4
        self.stage3 = nn.Sequential(_conv_bn(2 * w, 4 * w, 2), _conv_bn(4 * w, 4 * w))  # /8
        self.stage4 = nn.Sequential(_conv_bn(4 * w, 8 * w, 2), _conv_bn(8 * w, 8 * w))  # /16
        self.lateral4 = nn.Conv2d(8 * w, 4 * w, 1)
        self.smooth3 = _conv_bn(4 * w, 4 * w)
        self.lateral3to2 = nn.Conv2d(4 * w, 2 * w, 1)
        self.smooth2 = _conv_bn(2 * w, 2 * w)
        self.head = _conv_bn(2 * w, 2 * w)
        self.cls_out = nn.Conv2d(2 * w, config.num_classes, 1)
        self.box_out = nn.Conv2d(2 * w, 4, 1)
        self.ctr_out = nn.Conv2d(2 * w, 1, 1)
        prior = 0.01
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.box_out.weight, std=0.01)
        nn.init.constant_(self.box_out.bias, math.log(2.0))
        nn.init.normal_(self.ctr_out.weight, std=0.01)
        nn.init.zeros_(self.ctr_out.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c2 = self.stage2(self.stage1(x))
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        p3 = self.smooth3(c3 + F.interpolate(self.lateral4(c4), scale_factor=2.0, mode="nearest"))
        p2 = self.smooth2(c2 + F.interpolate(self.lateral3to2(p3), scale_factor=2.0, mode="nearest"))
        h = self.head(p2)
        return self.cls_out(h), self.box_out(h), self.ctr_out(h)


# ---------------------------------------------------------------------------
# Locations, box parametrisation, target assignment
# ---------------------------------------------------------------------------


def locations(height: int, width: int, *, stride: int = STRIDE, device=None) -> torch.Tensor:
    """Pixel centres of the output grid, row-major.

    Returns
    -------
    (H/stride * W/stride, 2) float32 tensor of ``(x, y)``.
    """
    gh, gw = height // stride, width // stride
    ys = (torch.arange(gh, dtype=torch.float32, device=device) + 0.5) * stride
    xs = (torch.arange(gw, dtype=torch.float32, device=device) + 0.5) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def decode_distances(raw: torch.Tensor, points: torch.Tensor, *, stride: int = STRIDE) -> torch.Tensor:
    """Raw box outputs ``(..., P, 4)`` at ``points (P, 2)`` -> xyxy boxes ``(..., P, 4)``.

    ``(l, t, r, b) = stride * exp(raw)``, box = ``(x - l, y - t, x + r, y + b)``.
    """
    d = stride * torch.exp(raw.clamp(max=10.0))
    x, y = points[..., 0], points[..., 1]
    return torch.stack([x - d[..., 0], y - d[..., 1], x + d[..., 2], y + d[..., 3]], dim=-1)


def encode_distances(boxes: torch.Tensor, points: torch.Tensor, *, stride: int = STRIDE) -> torch.Tensor:
    """Inverse of :func:`decode_distances` for points strictly inside their boxes.

    Parameters
    ----------
    boxes : (..., P, 4) xyxy tensor
    points : (P, 2) tensor
    """
    x, y = points[..., 0], points[..., 1]
    ltrb = torch.stack([x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y], dim=-1)
    if (ltrb <= 0).any():
        raise ValueError("encode_distances needs every point strictly inside its box")
    return torch.log(ltrb / stride)


@dataclass
class Targets:
    """Per-location training targets for a batch (``P`` locations per image).

    Attributes
    ----------
    labels : (B, P) int64 tensor
        Class index of the assigned object, -1 for background.
    boxes : (B, P, 4) float32 tensor
        xyxy box of the assigned object (zeros for background).
    centerness : (B, P) float32 tensor
        Centre-ness target (zeros for background).
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    centerness: torch.Tensor

    @property
    def positive(self) -> torch.Tensor:
        return self.labels >= 0


def assign_targets(gt_boxes: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor], points: torch.Tensor, *,
                   stride: int = STRIDE, center_fraction: float = 0.5) -> Targets:
    """Assign each output location to at most one object (see the module docstring).

    Parameters
    ----------
    gt_boxes : sequence of (M_b, 4) float tensors, xyxy pixels, one per image
    gt_labels : sequence of (M_b,) int64 tensors, class indices
    points : (P, 2) float tensor from :func:`locations`
    stride : int
    center_fraction : float in (0, 1]

    Returns
    -------
    Targets
    """
    b = len(gt_boxes)
    p = points.shape[0]
    device = points.device
    labels = torch.full((b, p), -1, dtype=torch.int64, device=device)
    boxes = torch.zeros((b, p, 4), dtype=torch.float32, device=device)
    ctr = torch.zeros((b, p), dtype=torch.float32, device=device)
    x, y = points[:, 0:1], points[:, 1:2]  # (P, 1)
    for i in range(b):
        g = gt_boxes[i].to(device=device, dtype=torch.float32).reshape(-1, 4)
        lab = gt_labels[i].to(device=device, dtype=torch.int64).reshape(-1)
        if g.shape[0] == 0:
            continue
        gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
        cx, cy = (g[:, 0] + g[:, 2]) / 2, (g[:, 1] + g[:, 3]) / 2
        ltrb = torch.stack([x - g[:, 0], y - g[:, 1], g[:, 2] - x, g[:, 3] - y], dim=-1)  # (P, M, 4)
        inside = ltrb.min(dim=-1).values > 0
        rx = torch.clamp(center_fraction * gw / 2, min=stride / 2)
        ry = torch.clamp(center_fraction * gh / 2, min=stride / 2)
        central = ((x - cx).abs() <= rx) & ((y - cy).abs() <= ry)
        cand = inside & central  # (P, M)
        nearest = ((points[:, None, :] - torch.stack([cx, cy], 1)[None]) ** 2).sum(-1).argmin(dim=0)  # (M,)
        cand[nearest, torch.arange(g.shape[0], device=device)] = True
        area = (gw * gh)[None].expand(p, -1).clone()
        area[~cand] = float("inf")
        best_area, best = area.min(dim=1)
        pos = torch.isfinite(best_area)
        labels[i, pos] = lab[best[pos]]
        boxes[i, pos] = g[best[pos]]
        d = ltrb[pos, best[pos]].clamp(min=1e-3)
        lr = d[:, [0, 2]]
        tb = d[:, [1, 3]]
        ctr[i, pos] = torch.sqrt((lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values))
    return Targets(labels=labels, boxes=boxes, centerness=ctr)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def _paired_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of row-aligned box pairs ``(N, 4), (N, 4) -> (N,)`` (xyxy, positive areas)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss summed over all elements (Lin et al. 2017)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (a_t * ce * (1 - p_t) ** gamma).sum()


def detection_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: Targets, points: torch.Tensor, *,
                   box_weight: float = 1.0, stride: int = STRIDE) -> dict[str, torch.Tensor]:
    """Focal + GIoU + centre-ness losses (see the module docstring).

    Returns
    -------
    dict with ``loss`` (the total, a scalar tensor) and ``cls``, ``box``, ``ctr`` parts.
    """
    cls, dist, ctr = outputs
    b, k = cls.shape[:2]
    cls = cls.flatten(2).transpose(1, 2).float()  # (B, P, K)
    dist = dist.flatten(2).transpose(1, 2).float()  # (B, P, 4)
    ctr = ctr.flatten(2).squeeze(1).float()  # (B, P)
    pos = targets.positive
    num_pos = max(float(pos.sum().item()), 1.0)
    onehot = torch.zeros_like(cls)
    onehot[pos, targets.labels[pos]] = 1.0
    loss_cls = focal_loss(cls, onehot) / num_pos
    if pos.any():
        pred_boxes = decode_distances(dist, points, stride=stride)[pos]
        w = targets.centerness[pos]
        g = _paired_giou(pred_boxes, targets.boxes[pos])
        loss_box = ((1.0 - g) * w).sum() / w.sum().clamp(min=1e-6)
        loss_ctr = F.binary_cross_entropy_with_logits(ctr[pos], targets.centerness[pos], reduction="sum") / num_pos
    else:
        loss_box = dist.sum() * 0.0
        loss_ctr = ctr.sum() * 0.0
    total = loss_cls + box_weight * loss_box + loss_ctr
    return {"loss": total, "cls": loss_cls.detach(), "box": loss_box.detach(), "ctr": loss_ctr.detach()}


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def decode_batch(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], *, image_sizes: Sequence[tuple[int, int]],
                 score_threshold: float = 0.05, iou_threshold: float = 0.5, pre_nms_top_k: int = 100,
                 max_detections: int = 100, stride: int = STRIDE) -> list[Any]:
    """Raw network outputs -> one :class:`~cvtool.detections.Detections` per image.

    Parameters
    ----------
    outputs : (cls (B, K, h, w), dist (B, 4, h, w), ctr (B, 1, h, w))
    image_sizes : sequence of (width, height), the unpadded size of each image
    """
    from cvtool.detections import postprocess

    cls, dist, ctr = outputs
    b, k, gh, gw = cls.shape
    points = locations(gh * stride, gw * stride, stride=stride, device=cls.device)
    scores = torch.sqrt(torch.sigmoid(cls.float()) * torch.sigmoid(ctr.float()))  # (B, K, h, w)
    scores = scores.flatten(2).transpose(1, 2).reshape(b, -1)  # (B, P*K), index = p*K + k
    boxes = decode_distances(dist.float().flatten(2).transpose(1, 2), points, stride=stride)  # (B, P, 4)
    top = min(pre_nms_top_k, scores.shape[1])
    top_scores, top_idx = scores.topk(top, dim=1)
    out = []
    top_scores = top_scores.cpu()
    top_idx = top_idx.cpu()
    boxes = boxes.cpu()
    for i in range(b):
        keep = top_scores[i] > score_threshold
        idx = top_idx[i][keep]
        loc = idx // k
        lab = idx % k
        out.append(postprocess(boxes[i][loc], top_scores[i][keep], lab, image_size=tuple(image_sizes[i]),
                               score_threshold=score_threshold, iou_threshold=iou_threshold,
                               max_detections=max_detections))
    return out


# ---------------------------------------------------------------------------
# The detector object (the protocol of cvtool.detectors)
# ---------------------------------------------------------------------------


class SingleShotDetector:
    """A trained single-shot detector: ``predict(images) -> list[Detections]``.

    Parameters
    ----------
    net : SingleShotNet
    classes : list of str
    category_ids : list of int
    device : torch.device
    score_threshold, iou_threshold : float
        Defaults for :meth:`predict` (``detect --conf/--iou`` override them).
    batch_size : int
        Images per forward pass.
    pre_nms_top_k : int
        Best (location, class) candidates per image handed to NMS.  100 keeps
        the digit-scene AP unchanged (to 1e-3) against 1000 and doubles the
        images per CPU-second (NMS dominated the cost).
    """

    kind = KIND

    def __init__(self, net: SingleShotNet, *, classes: list[str], category_ids: list[int], device: Any = "cpu",
                 score_threshold: float = 0.05, iou_threshold: float = 0.5, batch_size: int = 64,
                 pre_nms_top_k: int = 100) -> None:
        self.net = net.eval()
        self.classes = list(classes)
        self.category_ids = [int(c) for c in category_ids]
        self.device = torch.device(device)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.batch_size = batch_size
        self.pre_nms_top_k = pre_nms_top_k

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray], *, score_threshold: float | None = None,
                iou_threshold: float | None = None, max_detections: int = 100) -> list[Any]:
        """Detect objects in uint8 grey/BGR images (any sizes; equal sizes are batched).

        Returns
        -------
        list of Detections, one per image, in input order.
        """
        st = self.score_threshold if score_threshold is None else score_threshold
        it = self.iou_threshold if iou_threshold is None else iou_threshold
        results: list[Any] = [None] * len(images)
        for group in group_by_size(images, self.batch_size):
            batch = [images[i] for i in group]
            h, w = batch[0].shape[:2]
            if h < 1 or w < 1:
                raise BadInputError(f"image size {w}x{h} is empty")
            x = batch_tensor(batch, channels=self.net.config.in_channels, multiple=PAD_MULTIPLE, device=self.device)
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            dets = decode_batch(self.net(x), image_sizes=[(w, h)] * len(batch), score_threshold=st,
                                iou_threshold=it, max_detections=max_detections, pre_nms_top_k=self.pre_nms_top_k)
            for i, d in zip(group, dets):
                results[i] = d
        return results


def build_detector(state: dict[str, Any], *, device: Any = "cpu") -> SingleShotDetector:
    """A detector from a checkpoint dictionary (``model_config``, ``model``, ``classes``, ``category_ids``)."""
    try:
        cfg = state["model_config"]
        config = SingleShotConfig(**{k: cfg[k] for k in ("num_classes", "in_channels", "width", "center_fraction")})
        net = SingleShotNet(config)
        net.load_state_dict(state["model"])
        classes, category_ids = list(state["classes"]), [int(c) for c in state["category_ids"]]
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise BadInputError(f"not a valid single-shot checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if len(classes) != config.num_classes or len(category_ids) != config.num_classes:
        raise BadInputError(f"single-shot checkpoint has {len(classes)} class names for {config.num_classes} outputs")
    dev = torch.device(device)
    net.to(dev)
    if dev.type == "cpu":
        net.to(memory_format=torch.channels_last)  # about 1.5-2x faster convolutions on CPU
    return SingleShotDetector(net, classes=classes, category_ids=category_ids, device=dev)


def load(path: str | Path, *, device: str = "auto") -> SingleShotDetector:
    """Load a single-shot detector from ``weights/best.pt`` (or a run folder); never unpickles."""
    from cvtool.detectors.training import read_detector_checkpoint

    state, dev = read_detector_checkpoint(path, KIND, device)
    return build_detector(state, device=dev)


def config_dict(config: SingleShotConfig) -> dict[str, Any]:
    """The JSON-friendly architecture dictionary stored in checkpoints."""
    return asdict(config)


# ---------------------------------------------------------------------------
# Training (a Task for cvtool.runner.loop.fit)
# ---------------------------------------------------------------------------


def shift_batch(images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, *,
                generator: torch.Generator | None = None, max_shift: int,
                u: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-image translations that keep every object inside the canvas.

    Each image is rolled by an integer ``(dx, dy)`` drawn uniformly from the
    range its own boxes allow (at most ``max_shift``); the pixels that wrap
    around come from the empty margin, so no object is cut.

    Parameters
    ----------
    images : (B, C, H, W) tensor
    boxes : (B, M, 4) tensor, padded
    labels : (B, M) tensor, -1 marks padding
    generator : torch.Generator, optional
        Source of the draws when ``u`` is not given.
    u : (B, 2) tensor, optional
        Uniform draws in [0, 1) for each image's x and y shift (training passes
        per-sample draws of :class:`cvtool.runner.data.SampleDraws`, so a
        resumed run shifts exactly as the uninterrupted one).

    Returns
    -------
    (images, boxes) shifted copies.
    """
    b, _, h, w = images.shape
    valid = labels >= 0
    big = torch.tensor(float(max(h, w)), device=boxes.device)
    x1 = torch.where(valid, boxes[..., 0], big).amin(dim=1)
    y1 = torch.where(valid, boxes[..., 1], big).amin(dim=1)
    x2 = torch.where(valid, boxes[..., 2], -big).amax(dim=1)
    y2 = torch.where(valid, boxes[..., 3], -big).amax(dim=1)
    lo_x = torch.clamp(-torch.floor(x1), min=-max_shift, max=0)
    hi_x = torch.clamp(torch.floor(w - x2), min=0, max=max_shift)
    lo_y = torch.clamp(-torch.floor(y1), min=-max_shift, max=0)
    hi_y = torch.clamp(torch.floor(h - y2), min=0, max=max_shift)
    if u is None:
        if generator is None:
            raise ValueError("shift_batch needs draws u or a generator")
        u = torch.rand((2, b), generator=generator).to(boxes.device)
    else:
        u = u.to(device=boxes.device, dtype=torch.float32).reshape(b, 2).t()
    dx = (lo_x + torch.floor(u[0] * (hi_x - lo_x + 1))).clamp(max=hi_x).long().cpu()
    dy = (lo_y + torch.floor(u[1] * (hi_y - lo_y + 1))).clamp(max=hi_y).long().cpu()
    out = torch.stack([torch.roll(images[i], shifts=(int(dy[i]), int(dx[i])), dims=(1, 2)) for i in range(b)])
    shift = torch.stack([dx, dy, dx, dy], dim=1).to(boxes)[:, None, :]
    return out, torch.where(valid[..., None], boxes + shift, boxes)


class SingleShotTask:
    """The single-shot detector as a :class:`cvtool.runner.loop.Task`.

    Parameters
    ----------
    data : DetectionData
        Train and validation splits (:func:`cvtool.detectors.training.load_detection_data`).
    width, center_fraction : see :class:`SingleShotConfig`
    box_weight : float
        Weight of the GIoU loss.
    max_shift : int
        Largest random translation in pixels (0: no augmentation).
    data_path : str
        Stored in ``task_config`` for ``--resume``.
    """

    kind = KIND

    def __init__(self, data: Any, *, width: int = 16, center_fraction: float = 0.5, box_weight: float = 1.0,
                 max_shift: int = 16, data_path: str = "", in_channels: int | None = None,
                 max_train: int | None = None, val_split: str = "val", max_val: int | None = None) -> None:
        from cvtool.detectors.tensors import channels_of

        self.data = data
        self.classes = list(data.classes)
        self.category_ids = list(data.category_ids)
        channels = in_channels if in_channels is not None else channels_of(data.train.images[:64])
        self.config = SingleShotConfig(num_classes=len(self.classes), in_channels=channels, width=width,
                                       center_fraction=center_fraction)
        if box_weight <= 0:
            raise ValueError(f"box_weight must be > 0, got {box_weight}")
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.box_weight = box_weight
        self.max_shift = max_shift
        self.data_path = data_path
        self.max_train = max_train
        self.val_split, self.max_val = val_split, max_val  # recorded so --resume scores the same images
        self._points: dict[tuple[int, int, str], torch.Tensor] = {}

    def model_config(self) -> dict[str, Any]:
        return config_dict(self.config)

    def task_config(self) -> dict[str, Any]:
        return {"data": self.data_path, "max_train": self.max_train, "box_weight": self.box_weight,
                "max_shift": self.max_shift, "val_split": self.val_split, "max_val": self.max_val}

    def build_model(self) -> nn.Module:
        return SingleShotNet(self.config)

    def train_batches(self, env: Any, *, batch_size: int, seed: int) -> Any:
        from cvtool.detectors.tensors import to_channels
        from cvtool.runner.data import SampleDraws, TensorBatches

        imgs = np.stack([to_channels(im, self.config.in_channels) for im in self.data.train.images])
        boxes, labels = self.data.train.padded()
        tensors = {"images": torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(),
                   "boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}
        base = TensorBatches(tensors, batch_size=batch_size, seed=seed, ctx=env.dist, device=env.device)
        # shift draws from (seed, epoch, sample index) only: a resumed run repeats them exactly
        return SampleDraws(base, n=len(imgs), k=2, seed=seed)

    def _grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._points:
            self._points[key] = locations(h, w, device=device)
        return self._points[key]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], env: Any):
        x = batch["images"].float() / 255.0
        boxes, labels = batch["boxes"], batch["labels"]
        if self.max_shift > 0:
            x, boxes = shift_batch(x, boxes, labels, u=batch["u"], max_shift=self.max_shift)
        h, w = x.shape[2:]
        hp, wp = -(-h // PAD_MULTIPLE) * PAD_MULTIPLE, -(-w // PAD_MULTIPLE) * PAD_MULTIPLE
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h))
        points = self._grid(hp, wp, x.device)
        valid = labels >= 0
        targets = assign_targets([boxes[i][valid[i]] for i in range(boxes.shape[0])],
                                 [labels[i][valid[i]] for i in range(boxes.shape[0])], points,
                                 center_fraction=self.config.center_fraction)
        parts = detection_loss(model(env.images(x)), targets, points, box_weight=self.box_weight)
        return parts["loss"], {k: v for k, v in parts.items() if k != "loss"}

    def evaluate(self, model: nn.Module, env: Any) -> dict[str, float]:
        from cvtool.detectors.training import coco_scores

        if len(self.data.val) == 0:
            return {"score": 0.0}
        det = SingleShotDetector(model, classes=self.classes, category_ids=self.category_ids, device=env.device)
        dets = det.predict(list(self.data.val.images))
        scores = coco_scores(dets, self.data.val, num_classes=len(self.classes), class_names=self.classes)
        return {**scores, "score": scores["AP"]}
