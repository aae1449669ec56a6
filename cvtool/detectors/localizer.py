"""The single-object localiser: one network, a class head and a box head.

Input a canvas (``(B, C, H, W)`` float in [0, 1]) holding one object; output
class logits ``(B, num_classes)`` and one box ``(B, 4)`` in normalised xyxy
(fractions of the canvas width and height).

Two architectures:

``seed``
    The seed study's network, layer for layer: Conv 16-32-64 (3x3, 'valid'
    padding as in Keras, ReLU), each followed by 2x2 average pooling, Flatten,
    Dense 128 ReLU, then Dense ``num_classes`` (softmax) and Dense 4 (linear),
    initialised as Keras does (Glorot-uniform kernels, zero biases).
    Trained with Adam (1e-3), cross-entropy + MSE with equal weights, batch 64.
``default``
    A small fully-convolutional net with batch norm (widths ``w, 2w, 4w, 8w``
    at strides 1, 2, 4, 8) and a coordinate-aware head: every cell of the
    stride-8 grid predicts an attention logit and its distances to the box
    sides; the box is the attention-weighted average of the cells' boxes.  The
    class comes from a second small conv-BN net that sees the object cut out
    at 32x32 (``grid_sample``; around the jittered true box in training, the
    predicted box at inference), so classification is translation-free from
    the first step.  Trained with AdamW + OneCycle,
    cross-entropy + smooth L1 + GIoU (Rezatofighi et al., CVPR 2019) and a
    centre-cell term that teaches the attention where the object is.

:func:`load` returns a :class:`LocalizerDetector` (the detector protocol of
:mod:`cvtool.detectors`): ``predict(images)`` gives one box per image, with its
class and softmax score, through :func:`cvtool.detections.postprocess`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvtool.errors import BadInputError

KIND = "localizer"
ARCHS = ("default", "seed")
BOX_LOSSES = ("smooth-l1", "l1", "mse")


@dataclass(frozen=True)
class LocalizerConfig:
    """What rebuilds a localiser network (stored as ``model_config`` in checkpoints).

    Attributes
    ----------
    arch : {'default', 'seed'}
    num_classes : int
    in_channels : {1, 3}
    canvas : (height, width)
        The training canvas size; other images are resized to it.
    width : int
        ``default`` only: channels of the first stage (then 2x, 4x, 8x).
    """

    arch: str = "default"
    num_classes: int = 10
    in_channels: int = 1
    canvas: tuple[int, int] = (75, 75)
    width: int = 8

    def validate(self) -> LocalizerConfig:
        """Check every setting against its range, and the network's size, before anything is built.

        Raises
        ------
        ValueError
            Naming the setting, its value and the valid range.
        """
        from cvtool.detectors.limits import MAX_CANVAS, MAX_CLASSES, MAX_WIDTH, check_network_size, int_setting

        if self.arch not in ARCHS:
            raise ValueError(f"arch {str(self.arch)[:40]!r} is not one of {', '.join(ARCHS)}")
        int_setting("num_classes", self.num_classes, 1, MAX_CLASSES)
        if int_setting("in_channels", self.in_channels, 1, 3) == 2:
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if len(self.canvas) != 2:
            raise ValueError(f"canvas must be (height, width), got {self.canvas!r:.40}")
        h = int_setting("canvas height", self.canvas[0], 8, MAX_CANVAS)
        w = int_setting("canvas width", self.canvas[1], 8, MAX_CANVAS)
        if self.arch == "seed" and min(h, w) < 30:
            raise ValueError(f"the seed network needs a canvas of at least 30x30, got {h}x{w}")
        int_setting("width", self.width, 1, MAX_WIDTH)
        check_network_size(lambda: SeedNet(self) if self.arch == "seed" else LocNet(self),
                           f"a {self.arch} localiser of width {self.width} on a {h}x{w} canvas")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["canvas"] = list(self.canvas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocalizerConfig:
        return cls(arch=str(d["arch"]), num_classes=int(d["num_classes"]), in_channels=int(d["in_channels"]),
                   canvas=(int(d["canvas"][0]), int(d["canvas"][1])), width=int(d.get("width", 8))).validate()


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------


class SeedNet(nn.Module):
    """The seed study's network (see the module docstring)."""

    def __init__(self, config: LocalizerConfig) -> None:
        super().__init__()
        self.config = config
        c = config.in_channels
        self.features = nn.Sequential(
            nn.Conv2d(c, 16, 3), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 3), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.AvgPool2d(2),
        )
        h, w = config.canvas
        for _ in range(3):
            h, w = (h - 2) // 2, (w - 2) // 2
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(64 * h * w, 128), nn.ReLU())
        self.cls = nn.Linear(128, config.num_classes)
        self.box = nn.Linear(128, 4)
        # Keras' defaults, as the seed study used: Glorot-uniform kernels, zero biases
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.dense(self.features(x))
        return {"logits": self.cls(z), "boxes": self.box(z)}


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


CROP = 32
"""Side of the object crop the default arch classifies (pixels)."""
CROP_MARGIN = 0.15
"""The crop is the box grown by this fraction of its size on every side."""


def crop_objects(x: torch.Tensor, boxes: torch.Tensor, *, size: int = CROP, margin: float = CROP_MARGIN) -> torch.Tensor:
    """Bilinear crops ``(B, C, size, size)`` of ``x`` around normalised xyxy ``boxes`` (grown by ``margin``).

    Uses ``affine_grid`` + ``grid_sample``: batched, on the device; outside the image reads 0.
    """
    b = boxes.float()
    w = (b[:, 2] - b[:, 0]).clamp(min=1e-3) * (1 + 2 * margin)
    h = (b[:, 3] - b[:, 1]).clamp(min=1e-3) * (1 + 2 * margin)
    cx = b[:, 0] + b[:, 2] - 1.0          # centre in [-1, 1] grid units
    cy = b[:, 1] + b[:, 3] - 1.0
    theta = torch.zeros((b.shape[0], 2, 3), dtype=torch.float32, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, [b.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class LocNet(nn.Module):
    """The default localiser: conv-BN backbone, attention box head, classifier on the object crop.

    The box comes from the backbone's stride-8 grid (attention-weighted cell
    boxes); the class from a small conv net that sees the object cut out of
    the canvas at a fixed 32x32 size (during training around the true box,
    jittered; at inference around the predicted box), so it never has to learn
    where on the canvas the object is.
    """

    def __init__(self, config: LocalizerConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.backbone = nn.Sequential(
            _conv_bn(config.in_channels, w, 1),
            _conv_bn(w, 2 * w, 2), _conv_bn(2 * w, 2 * w, 1),
            _conv_bn(2 * w, 4 * w, 2), _conv_bn(4 * w, 4 * w, 1),
            _conv_bn(4 * w, 8 * w, 2), _conv_bn(8 * w, 8 * w, 1),
        )
        self.attn = nn.Conv2d(8 * w, 1, 1)
        self.dist = nn.Conv2d(8 * w, 4, 1)
        cw = 2 * w
        self.classifier = nn.Sequential(
            _conv_bn(config.in_channels, cw, 1),
            _conv_bn(cw, 2 * cw, 2), _conv_bn(2 * cw, 2 * cw, 1),
            _conv_bn(2 * cw, 4 * cw, 2), _conv_bn(4 * cw, 4 * cw, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * cw, config.num_classes),
        )

    def forward(self, x: torch.Tensor, crop_boxes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        f = self.backbone(x)                                  # (B, 8w, gh, gw)
        b, _, gh, gw = f.shape
        a = self.attn(f).flatten(1).float()                   # (B, gh*gw) attention logits
        weights = a.softmax(dim=1)
        # cell centres in normalised canvas coordinates
        ys = (torch.arange(gh, device=x.device, dtype=torch.float32) + 0.5) / gh
        xs = (torch.arange(gw, device=x.device, dtype=torch.float32) + 0.5) / gw
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        d = F.softplus(self.dist(f).float()).flatten(2)       # (B, 4, gh*gw) distances to l, t, r, b
        cells = torch.stack([cx.reshape(-1) - d[:, 0], cy.reshape(-1) - d[:, 1],
                             cx.reshape(-1) + d[:, 2], cy.reshape(-1) + d[:, 3]], dim=2)  # (B, P, 4)
        boxes = (weights[:, :, None] * cells).sum(dim=1)
        src = boxes.detach() if crop_boxes is None else crop_boxes
        crops = crop_objects(x, src).to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last):
            crops = crops.contiguous(memory_format=torch.channels_last)
        logits = self.classifier(crops)
        return {"logits": logits, "boxes": boxes, "attn": a, "grid": torch.tensor([gh, gw])}


def jitter_boxes(boxes: torch.Tensor, u: torch.Tensor, *, shift: float = 0.08, scale: float = 0.12) -> torch.Tensor:
    """Normalised xyxy boxes moved by up to ``shift`` of their size and scaled by up to ``1 +- scale``.

    ``u`` : (B, 4) uniform draws in [0, 1) (seeded by the caller).
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + (2 * u[:, 0] - 1) * shift * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + (2 * u[:, 1] - 1) * shift * h
    w = w * (1 + (2 * u[:, 2] - 1) * scale) / 2
    h = h * (1 + (2 * u[:, 3] - 1) * scale) / 2
    return torch.stack([cx - w, cy - h, cx + w, cy + h], dim=1)


def build_model(config: LocalizerConfig) -> nn.Module:
    """A freshly initialised network for ``config``."""
    config.validate()
    return SeedNet(config) if config.arch == "seed" else LocNet(config)


# ---------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms.

    Attributes
    ----------
    cls : float
        Cross-entropy of the class.
    box : float
        The box regression term, of kind ``box_loss`` on normalised xyxy.
    box_loss : {'smooth-l1', 'l1', 'mse'}
        ``smooth-l1`` switches from quadratic to linear at one pixel.
    giou : float
        ``1 - GIoU`` of predicted and true boxes.
    center : float
        ``default`` arch only: cross-entropy of the attention over grid cells
        against the cell holding the box centre.
    """

    cls: float = 1.0
    box: float = 5.0
    box_loss: str = "smooth-l1"
    giou: float = 2.0
    center: float = 0.5

    def validate(self) -> LossWeights:
        if self.box_loss not in BOX_LOSSES:
            raise ValueError(f"box loss {self.box_loss!r} is not one of {', '.join(BOX_LOSSES)}")
        for name in ("cls", "box", "giou", "center"):
            v = getattr(self, name)
            if not v >= 0:
                raise ValueError(f"{name} weight must be >= 0, got {v}")
        return self


SEED_LOSS = LossWeights(cls=1.0, box=1.0, box_loss="mse", giou=0.0, center=0.0)
DEFAULT_LOSS = LossWeights()


def paired_giou(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """GIoU of ``pred[i]`` with ``true[i]``, ``(B,)`` (the diagonal of :func:`cvtool.boxes.giou`)."""
    from cvtool import boxes as box_ops

    # order corners so a box predicted inside out is still a box (its GIoU is then low)
    p = torch.cat([torch.minimum(pred[:, :2], pred[:, 2:]), torch.maximum(pred[:, :2], pred[:, 2:])], dim=1)
    return torch.diagonal(box_ops.giou(p, true))


def localizer_loss(out: Mapping[str, torch.Tensor], labels: torch.Tensor, boxes: torch.Tensor, *,
                   weights: LossWeights, canvas: tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss of a batch.

    Parameters
    ----------
    out : dict
        The network's output: ``logits (B, C)``, ``boxes (B, 4)`` normalised
        xyxy, and for the default arch ``attn (B, gh*gw)`` and ``grid``.
    labels : (B,) int64 tensor
        Class indices.
    boxes : (B, 4) float tensor
        True boxes, normalised xyxy.
    weights : LossWeights
    canvas : (height, width)
        For the one-pixel switch point of smooth L1.

    Returns
    -------
    loss : scalar tensor
    parts : dict of str to scalar tensor
        The unweighted terms (``cls``, ``box``, and ``giou``/``center`` when weighted).
    """
    logits = out["logits"].float()
    pred = out["boxes"].float()
    parts: dict[str, torch.Tensor] = {"cls": F.cross_entropy(logits, labels)}
    if weights.box_loss == "mse":
        parts["box"] = F.mse_loss(pred, boxes)
    elif weights.box_loss == "l1":
        parts["box"] = F.l1_loss(pred, boxes)
    else:
        parts["box"] = F.smooth_l1_loss(pred, boxes, beta=1.0 / max(canvas))
    loss = weights.cls * parts["cls"] + weights.box * parts["box"]
    if weights.giou > 0:
        parts["giou"] = (1.0 - paired_giou(pred, boxes)).mean()
        loss = loss + weights.giou * parts["giou"]
    if weights.center > 0 and "attn" in out:
        gh, gw = (int(v) for v in out["grid"])
        cx = ((boxes[:, 0] + boxes[:, 2]) * 0.5 * gw).long().clamp(0, gw - 1)
        cy = ((boxes[:, 1] + boxes[:, 3]) * 0.5 * gh).long().clamp(0, gh - 1)
        parts["center"] = F.cross_entropy(out["attn"], cy * gw + cx)
        loss = loss + weights.center * parts["center"]
    return loss, {k: v.detach() for k, v in parts.items()}


# ---------------------------------------------------------------------------
# Device-side augmentation: redraw each object's position on the canvas
# ---------------------------------------------------------------------------


def shift_canvases(images: torch.Tensor, boxes: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every canvas's content so that its box lands at a new uniform random position.

    On a plain background this is the seed study's per-epoch redraw of the
    object's offset; pixels shifted in from outside are 0.

    Parameters
    ----------
    images : (B, C, H, W) tensor
    boxes : (B, 4) float tensor
        xyxy pixel boxes.
    u : (B, 2) float tensor in [0, 1)
        Uniform draws for x and y (from a seeded generator).

    Returns
    -------
    images : (B, C, H, W) tensor, same dtype and device
    boxes : (B, 4) float tensor, moved by the same integer offsets
    """
    b, _, h, w = images.shape
    lo = torch.stack([torch.ceil(-boxes[:, 0]), torch.ceil(-boxes[:, 1])], dim=1)
    hi = torch.stack([torch.floor(w - boxes[:, 2]), torch.floor(h - boxes[:, 3])], dim=1)
    hi = torch.maximum(hi, lo)
    off = lo + torch.floor(u * (hi - lo + 1)).clamp(max=hi - lo)   # (B, 2) integer offsets dx, dy
    dx, dy = off[:, 0].long(), off[:, 1].long()
    src_y = torch.arange(h, device=images.device)[None, :] - dy[:, None]    # (B, H)
    src_x = torch.arange(w, device=images.device)[None, :] - dx[:, None]    # (B, W)
    valid = ((src_y >= 0) & (src_y < h))[:, :, None] & ((src_x >= 0) & (src_x < w))[:, None, :]
    bi = torch.arange(b, device=images.device)[:, None, None]
    moved = images[bi, :, src_y.clamp(0, h - 1)[:, :, None], src_x.clamp(0, w - 1)[:, None, :]]  # (B,H,W,C)
    moved = moved * valid[..., None].to(moved.dtype)
    shifted = boxes + torch.stack([off[:, 0], off[:, 1], off[:, 0], off[:, 1]], dim=1).to(boxes.dtype)
    return moved.permute(0, 3, 1, 2).contiguous(), shifted


# ---------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------


def _resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    interp = cv2.INTER_AREA if image.shape[0] > h or image.shape[1] > w else cv2.INTER_LINEAR
    out = cv2.resize(image, (w, h), interpolation=interp)
    return out[:, :, None] if out.ndim == 2 else out


def images_to_tensor(images: Sequence[np.ndarray], config: LocalizerConfig, device: torch.device) -> torch.Tensor:
    """uint8 grey/BGR images -> ``(B, C, H, W)`` float tensor in [0, 1] at the training canvas size."""
    from cvtool.detectors.tensors import to_channels

    arr = np.stack([_resize(to_channels(im, config.in_channels), config.canvas) for im in images])
    return torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float().div_(255.0)


class LocalizerDetector:
    """A trained localiser behind the detector protocol of :mod:`cvtool.detectors`.

    Attributes
    ----------
    kind : str
        ``'localizer'``.
    classes : list of str
    category_ids : list of int
    config : LocalizerConfig
    device : torch.device
    """

    kind = KIND

    def __init__(self, net: nn.Module, *, classes: list[str], category_ids: list[int],
                 device: Any = "cpu", batch_size: int = 256) -> None:
        self.net = net.eval()
        self.config: LocalizerConfig = net.config
        self.classes = list(classes)
        self.category_ids = [int(c) for c in category_ids]
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def predict_arrays(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw predictions: boxes ``(N, 4)`` xyxy pixels of each image, scores ``(N,)``, labels ``(N,)``."""
        boxes, scores, labels = [], [], []
        for lo in range(0, len(images), self.batch_size):
            chunk = images[lo:lo + self.batch_size]
            out = self.net(images_to_tensor(chunk, self.config, self.device))
            prob = out["logits"].float().softmax(dim=1)
            s, lab = prob.max(dim=1)
            nb = out["boxes"].float()
            nb = torch.cat([torch.minimum(nb[:, :2], nb[:, 2:]), torch.maximum(nb[:, :2], nb[:, 2:])], dim=1)
            nb = nb.clamp(0.0, 1.0).cpu().numpy().astype(np.float64)
            sizes = np.array([[im.shape[1], im.shape[0]] * 2 for im in chunk], dtype=np.float64)
            boxes.append(nb * sizes)
            scores.append(s.cpu().numpy().astype(np.float64))
            labels.append(lab.cpu().numpy().astype(np.int64))
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)

    def predict(self, images: Sequence[np.ndarray], *, score_threshold: float = 0.0, iou_threshold: float = 0.5,
                max_detections: int = 1, min_size: float = 0.0) -> list:
        """One box per image, with its class and softmax score.

        Parameters
        ----------
        images : sequence of (H, W) or (H, W, 3) uint8 ndarray
            Grey or BGR; resized to the training canvas for the network, boxes
            are given in each image's own pixels.
        score_threshold, iou_threshold, max_detections, min_size
            Passed to :func:`cvtool.detections.postprocess` (``max_detections``
            is capped at 1: a localiser finds one object).  The default
            threshold 0 keeps every prediction.

        Returns
        -------
        list of Detections
            One per image, each with one box (none when its score is at or below
            ``score_threshold`` or the box is smaller than ``min_size``).
        """
        from cvtool.detections import postprocess

        images = list(images)
        boxes, scores, labels = self.predict_arrays(images)
        out = []
        for i, im in enumerate(images):
            out.append(postprocess(boxes[i:i + 1], scores[i:i + 1], labels[i:i + 1],
                                   image_size=(im.shape[1], im.shape[0]), score_threshold=score_threshold,
                                   iou_threshold=iou_threshold, min_size=min_size,
                                   max_detections=min(int(max_detections), 1)))
        return out


def build_detector(state: Mapping[str, Any], *, device: Any = "cpu") -> LocalizerDetector:
    """A detector from a checkpoint dictionary (see :mod:`cvtool.runner.checkpoint`)."""
    try:
        config = LocalizerConfig.from_dict(state["model_config"])
        net = build_model(config)
        net.load_state_dict(state["model"])
        classes = [str(c) for c in state["classes"]]
        category_ids = [int(c) for c in state["category_ids"]]
    except (KeyError, TypeError, RuntimeError, ValueError, IndexError) as exc:
        raise BadInputError(f"not a valid localizer checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if len(classes) != config.num_classes:
        raise BadInputError(f"localizer checkpoint has {len(classes)} class names for {config.num_classes} outputs")
    net.to(torch.device(device))
    return LocalizerDetector(net, classes=classes, category_ids=category_ids, device=device)


def load(path: str | Path, *, device: str = "auto") -> LocalizerDetector:
    """Load a localiser from ``weights/best.pt`` (or a run folder); never unpickles."""
    from cvtool.detectors import resolve_model_path
    from cvtool.runner.checkpoint import load_checkpoint
    from cvtool.runner.device import resolve_device

    p = resolve_model_path(path)
    state = load_checkpoint(p)
    if state.get("kind") != KIND:
        raise BadInputError(f"{p}: model kind is {state.get('kind')!r}, not {KIND!r}")
    return build_detector(state, device=resolve_device(device))


# ---------------------------------------------------------------------------
# Training: the runner task (see cvtool.runner.loop.Task)
# ---------------------------------------------------------------------------

AUGMENTS = ("shift", "none")


def _as_nchw(images: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(images))
    return t[:, None] if t.dim() == 3 else t.permute(0, 3, 1, 2).contiguous()


class ShiftBatches:
    """:class:`~cvtool.runner.data.TensorBatches` plus ``u``: six uniform draws per sample and epoch
    (two for the object's new position, four for the classifier crop's jitter).

    The draws depend on (seed, epoch, sample index) only, so a DDP run places
    every object where a one-process run would.
    """

    def __init__(self, base, *, n: int, seed: int) -> None:
        self.base = base
        self.n = n
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def epoch_batches(self, epoch: int, *, start: int = 0):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 1)
        u = torch.rand(self.n, 6, generator=g)
        for batch in self.base.epoch_batches(epoch, start=start):
            idx = batch["index"]
            batch["u"] = u[idx.cpu()].to(idx.device)
            yield batch


def loc_metrics(pred_labels: torch.Tensor, pred_boxes: torch.Tensor, labels: torch.Tensor,
                boxes: torch.Tensor, *, iou_threshold: float = 0.6) -> dict[str, float]:
    """Accuracy, mean IoU and the share of boxes with IoU >= ``iou_threshold`` (paired, same units)."""
    from cvtool import boxes as box_ops

    ious = torch.diagonal(box_ops.iou(pred_boxes.double(), boxes.double())) if len(boxes) else boxes[:, 0]
    return {"accuracy": float((pred_labels == labels).double().mean()) if len(labels) else 0.0,
            "mean_iou": float(ious.mean()) if len(ious) else 0.0,
            f"iou{iou_threshold:g}": float((ious >= iou_threshold).double().mean()) if len(ious) else 0.0}


class LocalizerTask:
    """Train a localiser on one-object canvases (a :class:`cvtool.runner.loop.Task`).

    Parameters
    ----------
    train, val : ArrayDataset
        From :func:`cvtool.datasets.arrays.load_arrays`; one box per image.
    arch : {'default', 'seed'}
    width : int
        ``default`` arch stage-1 channels.
    loss : LossWeights
    augment : {'shift', 'none'}
        ``shift``: redraw each object's position every epoch, on the device.
    settings : dict, optional
        Stored as ``task_config`` in checkpoints (data path and options, for ``--resume``).
    """

    kind = KIND

    def __init__(self, train, val, *, arch: str = "default", width: int = 8,
                 loss: LossWeights = DEFAULT_LOSS, augment: str = "shift",
                 settings: Mapping[str, Any] | None = None) -> None:
        if augment not in AUGMENTS:
            raise ValueError(f"augment {augment!r} is not one of {', '.join(AUGMENTS)}")
        self.loss_weights = loss.validate()
        self.augment = augment
        self.settings = dict(settings or {})
        tb, _ = train.single_boxes()
        vb, _ = val.single_boxes()
        if train.images.shape[1:] != val.images.shape[1:]:
            raise BadInputError(f"train canvases are {train.images.shape[1:]}, validation {val.images.shape[1:]}; "
                                "they must match")
        if list(train.category_ids) != list(val.category_ids):
            raise BadInputError("train and validation splits have different categories")
        self.classes = [str(c) for c in train.category_names]
        self.category_ids = [int(c) for c in train.category_ids]
        self.train_images = _as_nchw(train.images)
        self.val_images = _as_nchw(val.images)
        order_t = np.argsort(train.box_image, kind="stable")
        order_v = np.argsort(val.box_image, kind="stable")
        self.train_boxes = torch.from_numpy(tb.astype(np.float32))
        self.val_boxes = torch.from_numpy(vb.astype(np.float32))
        self.train_labels = torch.from_numpy(train.class_index[order_t])
        self.val_labels = torch.from_numpy(val.class_index[order_v])
        _, c, h, w = self.train_images.shape
        self.config = LocalizerConfig(arch=arch, num_classes=len(self.classes), in_channels=c, canvas=(h, w),
                                      width=width).validate()
        self.scale = torch.tensor([w, h, w, h], dtype=torch.float32)

    # -- Task interface ------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def task_config(self) -> dict[str, Any]:
        return {**self.settings, "augment": self.augment, "loss": asdict(self.loss_weights)}

    def build_model(self) -> nn.Module:
        return build_model(self.config)

    def train_batches(self, env, *, batch_size: int, seed: int):
        from cvtool.runner.data import TensorBatches, fits_on_device

        tensors = {"image": self.train_images, "box": self.train_boxes, "label": self.train_labels}
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        if fits_on_device(nbytes, env.device):
            tensors = {k: v.to(env.device) for k, v in tensors.items()}
        base = TensorBatches(tensors, batch_size=batch_size, shuffle=True, seed=seed, ctx=env.dist,
                             device=env.device)
        return ShiftBatches(base, n=len(self.train_labels), seed=seed)

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], env):
        images, boxes = batch["image"], batch["box"]
        u = batch["u"]
        if self.augment == "shift":
            images, boxes = shift_canvases(images, boxes, u[:, :2])
        x = env.images(images.float().div_(255.0))
        target = boxes / self.scale.to(boxes.device)
        if self.config.arch == "default":
            out = model(x, jitter_boxes(target, u[:, 2:6]))
        else:
            out = model(x)
        return localizer_loss(out, batch["label"], target, weights=self.loss_weights, canvas=self.config.canvas)

    def evaluate(self, model: nn.Module, env, *, batch_size: int = 512) -> dict[str, float]:
        preds, labels = [], []
        for lo in range(0, len(self.val_labels), batch_size):
            x = env.images(self.val_images[lo:lo + batch_size].to(env.device).float().div_(255.0))
            out = model(x)
            nb = out["boxes"].float()
            nb = torch.cat([torch.minimum(nb[:, :2], nb[:, 2:]), torch.maximum(nb[:, :2], nb[:, 2:])], dim=1)
            preds.append(nb.clamp(0, 1).cpu() * self.scale)
            labels.append(out["logits"].argmax(dim=1).cpu())
        m = loc_metrics(torch.cat(labels), torch.cat(preds), self.val_labels, self.val_boxes)
        m["score"] = 0.5 * (m["accuracy"] + m["iou0.6"])
        return m
