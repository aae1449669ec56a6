"""Operation strings -> validated, picklable pipeline steps.

Syntax
------
``NAME[:ARG[:ARG...]]`` where each ``ARG`` is ``key=value`` or a bare value for
the operation's positional parameters, in order.  Several ``key=value`` pairs
may also share one ``ARG`` separated by commas::

    gaussian:sigma=1.5            gaussian:ksize=5:sigma=1.2    gaussian:ksize=5,sigma=1.2
    median:k=5                    threshold:otsu                threshold:adaptive:block=15:c=4
    kernel:"0,-1,0;-1,5,-1;0,-1,0"   kernel:file=sharpen.txt:normalize=true
    noise:gaussian:sigma=12       noise:salt-pepper:amount=0.02

:func:`parse_pipeline` validates every step (names, keys, types, ranges,
kernel files) before any image is touched and raises
:class:`~cvtool.errors.UsageError` naming the bad value and what is valid.
:func:`apply_pipeline` runs the steps on one image.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvtool.errors import CvtoolError, UsageError

MATRIX = "matrix"


@dataclass(frozen=True)
class Param:
    """One parameter of an operation."""

    name: str
    kind: Any  # int, float, bool, str or MATRIX
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    odd: bool = False
    low_open: bool = False  # low bound excluded
    when: tuple[str, tuple[str, ...]] | None = None  # (selector parameter, values it applies to)

    def describe(self) -> str:
        kind = {int: "int", float: "float", bool: "bool", str: "str", MATRIX: "matrix"}[self.kind]
        if self.choices:
            rng = "{" + "|".join(self.choices) + "}"
        elif self.low is not None or self.high is not None:
            lo = "" if self.low is None else f"{self.low:g}{' <' if self.low_open else ' <='} "
            hi = "" if self.high is None else f" <= {self.high:g}"
            rng = f"{lo}{self.name}{hi}" + (" odd" if self.odd else "")
        else:
            rng = kind
        default = "" if self.default is None else f" (default {self.default})"
        only = "" if self.when is None else f" [{self.when[0]}={'|'.join(self.when[1])} only]"
        return f"{self.name}: {rng}{default}{only}"


@dataclass(frozen=True)
class OpInfo:
    """An operation: its public name, core function and parameters."""

    name: str
    func: str  # attribute of cvtool.filters.ops
    help: str
    params: tuple[Param, ...] = ()
    positional: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    group: str = ""
    random: bool = False
    drops_alpha: bool = False
    rename: tuple[tuple[str, str], ...] = ()  # string key -> keyword argument
    fixed: tuple[tuple[str, Any], ...] = ()  # keyword arguments an alias pins

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def _k(default: int = 3, odd: bool = False, name: str = "k", help: str = "window side in pixels") -> Param:
    return Param(name, int, default, help, low=1, high=1001, odd=odd)


LEVEL = "on the 8-bit scale 0..255"

OPERATIONS: tuple[OpInfo, ...] = (
    # smoothing
    OpInfo("mean", "mean", "box (mean) filter", (_k(),), ("k",), ("box",), "smoothing"),
    OpInfo("weighted", "weighted", "3x3 weighted average, kernel [1,2,1]^T[1,2,1]/16", (), (), (), "smoothing"),
    OpInfo("gaussian", "gaussian", "Gaussian blur (ksize and/or sigma; neither: sigma=1)",
           (Param("sigma", float, None, "std in pixels", low=0, high=1000, low_open=True),
            _k(None, True, "ksize", "odd kernel size (default 2*ceil(3*sigma)+1)")),
           ("sigma",), ("blur",), "smoothing"),
    OpInfo("median", "median", "median filter", (_k(3, True),), ("k",), (), "smoothing"),
    OpInfo("min", "minimum", "minimum filter (grey erosion)", (_k(),), ("k",), ("erode",), "smoothing"),
    OpInfo("max", "maximum", "maximum filter (grey dilation)", (_k(),), ("k",), ("dilate",), "smoothing"),
    OpInfo("bilateral", "bilateral", "edge-preserving bilateral filter",
           (Param("d", int, 9, "diameter (0: from sigma_space)", low=0, high=101),
            Param("sigma_color", float, 25.0, f"range sigma {LEVEL}", low=0, high=1e6, low_open=True),
            Param("sigma_space", float, 5.0, "spatial sigma in pixels", low=0, high=1000, low_open=True)),
           ("d",), (), "smoothing"),
    OpInfo("nlmeans", "nlmeans", "non-local means denoising",
           (Param("h", float, 10.0, f"strength {LEVEL}", low=0, high=1000),
            Param("template", int, 7, "patch side", low=1, high=35, odd=True),
            Param("search", int, 21, "search window side", low=1, high=101, odd=True)),
           ("h",), ("nl-means",), "smoothing"),
    # denoising
    OpInfo("wiener", "wiener", "adaptive Wiener filter (local mean/variance, like scipy.signal.wiener)",
           (_k(3, True), Param("noise", float, None, "noise variance in 8-bit levels squared (default: mean local variance)",
                               low=0, high=1e6)),
           ("k",), (), "denoising"),
    # sharpening
    OpInfo("sharpen", "sharpen", "Laplacian sharpening: x - amount * laplacian(x)",
           (Param("neighbours", int, 4, "Laplacian kernel", choices=("4", "8")),
            Param("amount", float, 1.0, "strength", low=0, high=100)),
           ("neighbours",), ("laplacian-sharpen",), "sharpening",
           rename=(("n", "neighbours"), ("neighbors", "neighbours"))),
    OpInfo("unsharp", "unsharp", "unsharp mask: x + amount * (x - gaussian(x, sigma))",
           (Param("sigma", float, 1.0, "blur sigma in pixels", low=0, high=1000, low_open=True),
            Param("amount", float, 1.0, "strength", low=0, high=100),
            Param("threshold", float, 0.0, f"ignore detail below this {LEVEL}", low=0, high=255)),
           ("sigma",), ("unsharp-mask",), "sharpening"),
    OpInfo("kernel", "correlate", "custom kernel, rows separated by ';' (correlation, like filter2D)",
           (Param("k", MATRIX, None, "weights '0,-1,0;-1,5,-1;0,-1,0' (or file=PATH)"),
            Param("file", str, None, "text file (one row per line) or .npy with the weights"),
            Param("normalize", bool, False, "divide by the sum of weights")),
           ("k",), ("conv",), "sharpening"),
    # noise
    OpInfo("noise", "noise", "add seeded noise (per image seed from --seed and the input path)",
           (Param("kind", str, "gaussian", "noise model", choices=("gaussian", "salt-pepper", "poisson", "speckle")),
            Param("sigma", float, 10.0, f"std {LEVEL} (gaussian, speckle)", low=0, high=255,
                  when=("kind", ("gaussian", "speckle"))),
            Param("amount", float, 0.05, "fraction of pixels hit (salt-pepper)", low=0, high=1,
                  when=("kind", ("salt-pepper",))),
            Param("salt", float, 0.5, "share of white among hits (salt-pepper)", low=0, high=1,
                  when=("kind", ("salt-pepper",))),
            Param("peak", float, 255.0, "photon count at full scale (poisson)", low=0, high=1e9, low_open=True,
                  when=("kind", ("poisson",)))),
           ("kind",), (), "noise", random=True),
    # pointwise
    OpInfo("invert", "invert", "negative: max - x", (), (), ("negative",), "pointwise"),
    OpInfo("threshold", "threshold", "binarise to 0/max (per channel)",
           (Param("method", str, "fixed", "how", choices=("fixed", "otsu", "adaptive")),
            Param("t", float, 128.0, f"fixed threshold {LEVEL} (x > t)", low=0, high=255,
                  when=("method", ("fixed",))),
            Param("block", int, 11, "adaptive neighbourhood side", low=3, high=1001, odd=True,
                  when=("method", ("adaptive",))),
            Param("c", float, 2.0, f"adaptive offset {LEVEL} (x > mean - c)", low=-255, high=255,
                  when=("method", ("adaptive",))),
            Param("weights", str, "mean", "adaptive local mean", choices=("mean", "gaussian"),
                  when=("method", ("adaptive",)))),
           ("method",), ("binarize",), "pointwise"),
    OpInfo("stretch", "stretch", "contrast stretch of percentiles [low, high] to the full range (0,100: min-max)",
           (Param("low", float, 0.0, "lower percentile", low=0, high=100),
            Param("high", float, 100.0, "upper percentile", low=0, high=100)),
           (), ("minmax",), "pointwise"),
    OpInfo("percentile", "stretch", "percentile stretch (stretch with low=2, high=98 by default)",
           (Param("low", float, 2.0, "lower percentile", low=0, high=100),
            Param("high", float, 98.0, "upper percentile", low=0, high=100)),
           (), ("percentile-stretch",), "pointwise"),
    OpInfo("slice", "slice_levels", "grey-level slicing: [low, high] -> value",
           (Param("low", float, 100.0, LEVEL, low=0, high=255),
            Param("high", float, 200.0, LEVEL, low=0, high=255),
            Param("value", float, 255.0, LEVEL, low=0, high=255),
            Param("background", str, "keep", "other pixels", choices=("keep", "zero"))),
           (), ("level-slice",), "pointwise"),
    OpInfo("log", "log_transform", "log transform c*log(1+r), r on the 8-bit scale",
           (Param("c", float, None, "gain (default 255/log(256))", low=0, high=1e6, low_open=True),),
           (), (), "pointwise"),
    OpInfo("power", "power", "power law c*(r+lambda)^gamma, r scaled to 0..1",
           (Param("gamma", float, 1.0, "exponent", low=0, high=100, low_open=True),
            Param("c", float, 1.0, "gain", low=0, high=1e6),
            Param("lambda", float, 0.0, f"offset {LEVEL}", low=0, high=255)),
           ("gamma",), ("gamma",), "pointwise", rename=(("lambda", "lam"),)),
    OpInfo("equalize", "equalize", "histogram equalisation (colour: on luma)", (), (), ("equalise",), "pointwise"),
    OpInfo("clahe", "clahe", "contrast-limited adaptive histogram equalisation (colour: on luma)",
           (Param("clip", float, 2.0, "clip limit", low=0, high=1e6, low_open=True),
            Param("tiles", int, 8, "grid side in tiles", low=1, high=256)),
           ("clip",), (), "pointwise"),
    # colour
    OpInfo("gray", "gray", "convert to grey (drops alpha)", (), (), ("grey",), "colour", drops_alpha=True),
    OpInfo("hsv", "hsv", "convert BGR to HSV (drops alpha)", (), (), (), "colour", drops_alpha=True),
    OpInfo("lab", "lab", "convert BGR to CIE L*a*b* (drops alpha)", (), (), (), "colour", drops_alpha=True),
)

_BY_NAME: dict[str, OpInfo] = {}
for _op in OPERATIONS:
    for _n in (_op.name, *_op.aliases):
        _BY_NAME[_n] = _op

OPERATION_NAMES: tuple[str, ...] = tuple(op.name for op in OPERATIONS)
OPERATION_ALIASES: frozenset[str] = frozenset(_BY_NAME)
"""Every accepted operation name, aliases included."""

_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$", re.S)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Step:
    """A validated operation: the name and keyword arguments for its function."""

    op: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    text: str = field(default="", compare=False)

    @property
    def info(self) -> OpInfo:
        return _BY_NAME[self.op]


def looks_like_operation(arg: str) -> bool:
    """True when ``arg`` starts with an operation-like name (``word`` or ``word:...``)."""
    return bool(_NAME.match(arg.split(":", 1)[0]))  # a name has no '.' or '/', unlike a file


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_matrix(text: str) -> tuple[tuple[float, ...], ...]:
    """Parse ``'a,b,c;d,e,f'`` (rows by ``;`` or newlines, values by ``,`` or spaces).

    Error messages give the row and column of a bad value, never the text itself
    (the text may come from a file that is not a kernel).
    """
    rows = [r for r in re.split(r"[;\n]", text.strip().strip("\"'")) if r.strip()]
    if len(rows) > 99:
        raise ValueError(f"kernel has {len(rows)} rows; at most 99")
    matrix = []
    for i, r in enumerate(rows, 1):
        vals = [v for v in re.split(r"[,\s]+", r.strip()) if v]
        if len(vals) > 99:
            raise ValueError(f"kernel row {i} has {len(vals)} values; at most 99")
        row = []
        for j, v in enumerate(vals, 1):
            try:
                row.append(float(v))
            except ValueError:
                raise ValueError(f"row {i}, value {j} is not a number") from None
        matrix.append(tuple(row))
    if not matrix or not matrix[0]:
        raise ValueError("empty kernel")
    widths = {len(r) for r in matrix}
    if len(widths) != 1:
        raise ValueError(f"rows have different lengths {sorted(widths)}")
    if not all(math.isfinite(v) for r in matrix for v in r):
        raise ValueError("kernel has a non-finite value")
    if len(matrix) > 99 or len(matrix[0]) > 99:
        raise ValueError(f"kernel is {len(matrix)}x{len(matrix[0])}; at most 99x99")
    return tuple(matrix)


MAX_KERNEL_FILE_BYTES = 1 << 20
"""Largest kernel file read (1 MiB: 99x99 values as text or .npy fit many times over)."""


def _read_kernel_file(path: str) -> tuple[tuple[float, ...], ...]:
    """Read a kernel from a regular file of at most 1 MiB; messages never quote its contents."""
    import io

    from cvtool.io.files import read_bounded_regular_file

    p = Path(path)
    data = read_bounded_regular_file(p, max_bytes=MAX_KERNEL_FILE_BYTES)
    if p.suffix.lower() == ".npy":
        import numpy as np

        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            values = np.asarray(arr, dtype=np.float64)
        except (ValueError, TypeError, OSError, EOFError):
            raise ValueError("not a numeric .npy array file") from None
        if values.ndim != 2:
            raise ValueError(f"holds a {values.ndim}-D array; a kernel is 2-D")
        return parse_matrix(";".join(",".join(repr(float(v)) for v in row) for row in values))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text (one kernel row per line, or a .npy file)") from None
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return parse_matrix(text)


def _convert(op: OpInfo, param: Param, raw: str) -> Any:
    where = f"{op.name}: {param.name}={raw!r}"
    try:
        if param.kind is int:
            value: Any = int(raw)
        elif param.kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError("not finite")
        elif param.kind is bool:
            value = _parse_bool(raw)
        elif param.kind is MATRIX:
            value = parse_matrix(raw)
        else:
            value = raw
    except ValueError as exc:
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "text", MATRIX: "a kernel"}[param.kind]
        detail = f" ({exc})" if param.kind is MATRIX else ""
        raise UsageError(f"{where} is not {kind}{detail}; {param.describe()}") from None
    if param.choices is not None and str(value) not in param.choices:
        raise UsageError(f"{where} is not a valid choice; choose one of {', '.join(param.choices)}")
    if param.low is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < param.low or (param.low_open and value == param.low) or (
                param.high is not None and value > param.high):
            raise UsageError(f"{where} is out of range; need {param.describe()}")
        if param.odd and value % 2 == 0:
            raise UsageError(f"{where} must be odd; need {param.describe()}")
    return value


def parse_operation(text: str) -> Step:
    """Parse and validate one operation string (see module docstring).

    Raises
    ------
    UsageError
        Unknown operation (valid names listed), unknown or repeated key,
        too many positional values, or a value of the wrong type or range.
    """
    parts = text.split(":")
    name = parts[0].strip().lower()
    op = _BY_NAME.get(name)
    if op is None:
        raise UsageError(f"unknown operation {parts[0]!r}; valid operations: {', '.join(OPERATION_NAMES)} "
                         "(cvtool filter --list describes them)")
    args: list[str] = []
    for part in parts[1:]:
        pieces = part.split(",")
        if len(pieces) > 1 and all(_KEY_VALUE.match(p.strip()) for p in pieces):
            args.extend(p.strip() for p in pieces)
        else:
            args.append(part)
    values: dict[str, Any] = {}
    renames = dict(op.rename)
    positional = list(op.positional)
    for arg in args:
        m = _KEY_VALUE.match(arg.strip())
        if m:
            key = m.group(1).lower().replace("-", "_")
            raw = m.group(2)
            key = {k: v for k, v in renames.items() if k != v and op.param(k) is None}.get(key, key)
        else:
            if not positional:
                expects = ", ".join(p.name for p in op.params) or "no parameters"
                raise UsageError(f"{op.name}: unexpected value {arg!r}; {op.name} takes {expects} (as key=value)")
            key, raw = positional.pop(0), arg
        param = op.param(key)
        if param is None:
            valid = ", ".join(p.name for p in op.params) or "none"
            raise UsageError(f"{op.name}: unknown parameter {key!r}; valid parameters: {valid}")
        if key in values:
            raise UsageError(f"{op.name}: parameter {key!r} given twice")
        if key in positional:
            positional.remove(key)
        values[key] = _convert(op, param, raw)
    _check_combination(op, values)
    _check_relevant(op, values)
    kwargs = {}
    for key, value in values.items():
        kw = renames.get(key, key)
        if op.name == "kernel" and key == "file":
            try:
                kwargs["kernel"] = _read_kernel_file(value)
            except (OSError, ValueError, CvtoolError) as exc:
                detail = str(exc).removeprefix(f"{value}: ")
                raise UsageError(f"kernel: cannot use file={value!r}: {detail}") from None
            continue
        if op.name == "kernel" and key == "k":
            kwargs["kernel"] = value
            continue
        if kw == "neighbours":
            value = int(value)
        kwargs[kw] = value
    for p in op.params:  # every default spelled out: the step (and run.json) says exactly what runs
        if p.name not in values and p.default is not None:
            value = int(p.default) if renames.get(p.name, p.name) == "neighbours" else p.default
            kwargs[renames.get(p.name, p.name)] = value
    kwargs.update(dict(op.fixed))
    return Step(op.name, tuple(sorted(kwargs.items())), text)


def _check_relevant(op: OpInfo, values: dict[str, Any]) -> None:
    """A parameter given for a mode it does not apply to is an error, not silently ignored."""
    for key in values:
        param = op.param(key)
        if param is None or param.when is None:
            continue
        selector, allowed = param.when
        chosen = values.get(selector, op.param(selector).default)
        if str(chosen) not in allowed:
            value = values[key]
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            raise UsageError(f"{op.name}: {key}={shown} has no effect with {selector}={chosen}; "
                             f"{key} applies to {selector}={'|'.join(allowed)} only")


def _check_combination(op: OpInfo, values: dict[str, Any]) -> None:
    if op.name == "kernel":
        if ("k" in values) == ("file" in values):
            raise UsageError("kernel: give the weights inline (kernel:'0,-1,0;-1,5,-1;0,-1,0') or file=PATH, "
                             "exactly one of them")
    if op.func == "stretch" and values.get("low", 0.0 if op.name == "stretch" else 2.0) >= values.get(
            "high", 100.0 if op.name == "stretch" else 98.0):
        raise UsageError(f"{op.name}: low must be below high, got low={values.get('low')} high={values.get('high')}")
    if op.name == "slice" and values.get("low", 100.0) > values.get("high", 200.0):
        raise UsageError(f"slice: low={values.get('low', 100.0)} must not exceed high={values.get('high', 200.0)}")


def parse_pipeline(texts: list[str] | tuple[str, ...]) -> tuple[Step, ...]:
    """Parse every operation string (all validated before returning)."""
    if not texts:
        raise UsageError("no operation given; e.g. gaussian:sigma=1.5 (cvtool filter --list shows all)")
    return tuple(parse_operation(t) for t in texts)


def image_seed(seed: int, key: str) -> int:
    """A 64-bit seed derived from ``seed`` and an image key (its relative path)."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def apply_pipeline(image, steps: tuple[Step, ...], *, seed: int = 0, key: str = "", alpha: str = "keep"):
    """Run ``steps`` on ``image`` in order.

    Parameters
    ----------
    image : (H, W[, 1|3|4]) uint8, uint16 or float ndarray
        Grey, BGR or BGRA.
    steps : tuple of Step
        From :func:`parse_pipeline`.
    seed, key : int, str
        Random operations draw from ``default_rng(SeedSequence([image_seed(seed, key), i]))``
        for step ``i``, so results depend on the seed and the image's relative path
        only (not on ``--jobs`` or the order of processing).
    alpha : {'keep', 'drop'}
        ``keep``: the alpha channel passes through every operation unchanged and
        is re-attached (colour conversions always drop it).  ``drop``: removed first.

    Returns
    -------
    ndarray
        The result, same dtype as the input.
    """
    import numpy as np

    from cvtool.filters import ops
    from cvtool.filters.dtypes import check_dtype, check_finite, merge_alpha, split_alpha

    if alpha not in ("keep", "drop"):
        raise ValueError(f"alpha={alpha!r} is not one of keep, drop")
    check_dtype(image)
    check_finite(image)
    colour, alpha_ch = split_alpha(image)
    if alpha == "drop":
        alpha_ch = None
    base = image_seed(seed, key)
    for i, step in enumerate(steps):
        info = step.info
        kwargs = dict(step.kwargs)
        if info.random:
            kwargs["rng"] = np.random.default_rng(np.random.SeedSequence([base, i]))
        colour = getattr(ops, info.func)(colour, **kwargs)
        if info.drops_alpha:
            alpha_ch = None
    return merge_alpha(colour, alpha_ch)


def describe_operations() -> str:
    """A plain-text table of every operation and its parameters (for ``--list``)."""
    lines = []
    group = None
    for op in OPERATIONS:
        if op.group != group:
            group = op.group
            lines.append(f"{group}:")
        alias = f" (alias: {', '.join(op.aliases)})" if op.aliases else ""
        pos = f"  positional: {', '.join(op.positional)}" if op.positional else ""
        lines.append(f"  {op.name}{alias} - {op.help}{pos}")
        for p in op.params:
            lines.append(f"      {p.describe()}  {p.help}")
    return "\n".join(lines)
