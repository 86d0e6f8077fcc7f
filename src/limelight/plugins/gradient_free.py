"""Gradient-free saliency: Score-CAM, Ablation-CAM and RISE, written once against
:class:`limelight.Model` and its ``xp``.

They need no gradients, only extra forward passes, so they run on host-only backends too:

* ``scorecam`` needs :class:`~limelight.core.model.SupportsLayers` (activations);
* ``ablationcam`` also needs :class:`~limelight.core.model.SupportsActivationEdit` (outputs
  with a layer's activations replaced);
* ``rise`` needs nothing beyond :meth:`Model.predict`.

Every extra pass is cut in batches of ``batch_size`` rows (``explain(..., batch_size=)``,
default :data:`BATCH_SIZE`), built on the model's device a batch at a time, so peak memory
grows with ``batch_size``, not with the number of channels or masks. ``progress`` (None or a
callable ``progress(done, total)``) is called after each batch with the rows fed so far.

Score-CAM and Ablation-CAM post-process like the Grad-CAM family (``relu``, ``upsample``,
``normalize``, see :mod:`limelight.plugins.cam`) and agree with pytorch-grad-cam's
``ScoreCAM`` and ``AblationCAM`` after normalisation. RISE maps are at input resolution
already (``relu``, ``normalize`` only).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from ..core.errors import InputError, ParameterError
from ..core.explainer import Explainer
from ..core.explanation import Explanation
from ..core.hookspecs import hookimpl
from ..core.inputs import get, held, several, spatial_key, take
from ..core.inputs import rows as input_rows
from ..core.model import Array, SupportsActivationEdit, SupportsLayers, batches
from ..core.ops import bilinear_matrix
from ..core.targets import Target
from .cam import not_spatial, postprocess, to_spatial, weighted_sum

__all__ = ["ScoreCAM", "AblationCAM", "RISE", "BATCH_SIZE", "ABLATION_OFFSET", "ablation_offset", "rise_grids"]

#: Rows per extra framework call when ``batch_size`` is not given.
BATCH_SIZE = 32

#: Ablation-CAM's ablation value for layers whose activations are not zero somewhere:
#: ``min(A) - ABLATION_OFFSET`` (pytorch-grad-cam's ``ABLATION_VALUE``), or ``min(A) -
#: sqrt(max finite)`` where the activations' dtype cannot hold that (float16: 256), so the
#: rest of the network sees a finite value.
ABLATION_OFFSET = 1e7


def ablation_offset(xp: Any, dtype: Any) -> float:
    """:data:`ABLATION_OFFSET`, capped at the square root of ``dtype``'s largest finite value."""
    return min(ABLATION_OFFSET, math.sqrt(float(xp.finfo(dtype).max)))


def _progress(callback: Any) -> Callable[[int, int], None]:
    """``progress`` checked: None (a no-op) or a callable."""
    if callback is None:
        return lambda done, total: None
    if not callable(callback):
        raise ParameterError(f"progress must be None or a callable progress(done, total), got {callback!r}.")
    return callback


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


class _ExtraPasses(Explainer):
    """What the three share: batching, progress, scoring a target on extra passes. A model
    fed several inputs: the image named by ``explain_input`` (or the only one) is masked and
    mapped, the other inputs held at each sample's values."""

    multi_target = False
    several_inputs = True

    def size(self) -> int:
        """Rows per extra framework call: ``explain(..., batch_size=)``, else :data:`BATCH_SIZE`."""
        return self.batch_size or BATCH_SIZE

    def target_data(self, target: Target, like: Array) -> list[Array]:
        """The fixed ``target``'s per-sample data ``(N, ...)`` on the device, moved there
        once per call (the loops then index it on the device: no host transfer per batch)."""
        return [self.model.asarray(d, like=like) for d in target.data()]

    def scores(self, target: Target, outputs: Array, data: list[Array], samples: Array | int | None) -> Array:
        """The fixed ``target``'s scores ``(B,)`` of ``outputs`` ``(B, K)`` (``data`` from
        :meth:`target_data`): row ``j`` belongs to sample ``samples[j]`` (a device index
        array), to sample ``samples`` (an int: every row), or to sample ``j`` (None)."""
        xp, rows = self.xp, int(outputs.shape[0])
        if samples is None:
            rows_data = data
        elif isinstance(samples, int):
            rows_data = [xp.broadcast_to(d[samples : samples + 1], (rows, *d.shape[1:])) for d in data]
        else:
            rows_data = [xp.take(d, samples, axis=0) for d in data]
        return target.scores(xp, outputs, *rows_data)[:, 0]

    def image_input(self, x: Array) -> tuple[Any, Array]:
        """The input masked and mapped, with its key: ``(None, x)`` for one array; of several
        inputs, the one named by ``explain_input`` or else the only image ``(N, H, W, C)``
        (:func:`~limelight.core.inputs.spatial_input`); the others are held at each sample's
        values."""
        if not several(x):
            return None, x
        key = spatial_key(x, self.params.get("explain_input"))
        return key, get(x, key)

    def with_image(self, x: Array, key: Any, images: Array, samples: Array) -> Array:
        """The inputs of a batch of edited images ``(B, ...)`` whose row ``j`` belongs to sample
        ``samples[j]`` (device ints): the images themselves for one input; of several, the
        image replaced and the other inputs taken at those samples."""
        return images if key is None else held(self.xp, x, key, images, samples)

    def postprocess(self, maps: Array, x: Array, *, upsample: bool) -> Array:
        """ReLU, upsampling to the input's (H, W) with half-pixel centres, min-max: each as
        the ``relu``/``upsample``/``normalize`` params say (the Grad-CAM family's steps)."""
        return postprocess(
            self.model, maps, self.image_input(x)[1], relu=self.params["relu"], upsample=upsample,
            normalize=self.params["normalize"],
        )

    def result_params(self) -> dict[str, Any]:
        """What the explanation records beyond the params: a progress callback is not a
        setting of the result (and does not pickle), so it is recorded as None."""
        return {"progress": None}


class _LayerCAM(_ExtraPasses):
    """A map ``Σ_c w[n, c] · A[n, ..., c]`` of a layer's activations, with weights from
    extra forward passes."""

    defaults = MappingProxyType(
        {"layer": None, "relu": True, "upsample": True, "normalize": True, "reshape": None, "progress": None}
    )
    requires: ClassVar[tuple[type, ...]] = (SupportsLayers,)

    def layer_activations(self, x: Array) -> tuple[str, Array, Array]:
        """The resolved layer, its activations as the backend hands them out (channels-last,
        e.g. tokens ``(N, T, C)``) and as a grid of positions ``(N, h, w, C)`` (tokens on
        their grid, see :func:`~limelight.plugins.cam.to_spatial` and ``reshape``; a
        LayerError when there is none)."""
        model = self.model
        assert isinstance(model, SupportsLayers)
        layer = self.params["layer"]
        layer = model.default_layer(x) if layer is None else model.resolve_layer(layer)
        activations = model.activations(x, layer, batch_size=self.size())
        spatial = to_spatial(self.xp, self.image_input(x)[1], layer, activations, None, self.params["reshape"])
        if spatial is None or spatial[0].ndim != 4:
            raise not_spatial(self.name, model, layer, tuple(activations.shape), x)
        return layer, activations, spatial[0]

    def finish(
        self, x: Array, activations: Array, weights: Array, classes: np.ndarray, outputs: Array, layer: str
    ) -> Explanation:
        """``Σ_c w_c A_c`` post-processed and packaged."""
        xp = self.xp
        acts = xp.astype(activations, xp.float32)
        maps = weighted_sum(xp, acts, xp.astype(weights, xp.float32))
        maps = self.postprocess(maps, x, upsample=self.params["upsample"])
        return self.result(x, maps, classes[:, 0], outputs, layer=layer, **self.result_params())


class ScoreCAM(_LayerCAM):
    """Score-CAM (Wang et al. 2020): channels weighted by the scores of the inputs they mask.

    Each activation channel, upsampled and min-max scaled, masks the input; the masked
    input's score weighs the channel:
    ``M_c = (up(A_c) - min up(A_c)) / (max up(A_c) - min up(A_c) + 1e-8)`` (``up``:
    bilinear with ``align_corners=True``), ``s_c = y(x ⊙ M_c)`` (the target's raw score, e.g.
    the class logit), ``w = softmax_c(s)``, ``L = Σ_c w_c · A_c``.

    As pytorch-grad-cam's ``ScoreCAM``: no baseline score is subtracted (the paper's
    ``y(x ⊙ M_c) - y(x_b)``; softmax does not change under a shift). A channel that is
    constant over the map gives an all-zero mask (``A - min = 0``): the zero input is scored
    once, not once per such channel. Masked inputs are built ``batch_size`` at a time on the
    device.

    >>> limelight.explain(model, x, "scorecam", layer="layer4", batch_size=64)   # doctest: +SKIP
    """

    name = "scorecam"

    def explain(self, x: Array, target: Target) -> Explanation:
        model, xp = self.model, self.xp
        progress = _progress(self.params["progress"])
        key, image = self.image_input(x)
        if image.ndim != 4:
            raise InputError(f"{self.name} masks images (N, H, W, C); got inputs of shape {tuple(image.shape)}.")
        size = self.size()
        outputs = model.predict(x, batch_size=size)
        target, classes = self.fix_target(target, outputs)
        layer, _, activations = self.layer_activations(x)
        acts = xp.astype(activations, xp.float32)
        n, _, _, channels = (int(s) for s in acts.shape)
        height, width = int(image.shape[1]), int(image.shape[2])
        constant_d = xp.max(acts, axis=(1, 2)) == xp.min(acts, axis=(1, 2))  # (n, C)
        constant = np.asarray(model.to_numpy(constant_d), bool)  # tiny control values
        scores = xp.zeros((n * channels,), dtype=xp.float32, device=image.device)
        data = self.target_data(target, outputs)
        if constant.any():  # x ⊙ 0: the same zero image for every such channel
            if key is None:
                zero_out = model.predict(xp.zeros_like(image[:1]))
                zero_out = xp.tile(zero_out, (n, *[1] * (zero_out.ndim - 1)))
            else:  # with each sample's other inputs
                zero_out = model.predict(self.with_image(x, key, xp.zeros_like(image), model.asarray(np.arange(n))))
            zero = self.scores(target, zero_out, data, None)
            zero = xp.astype(zero, xp.float32)[:, None] * xp.astype(constant_d, xp.float32)
            scores = scores + xp.reshape(zero, (-1,))
        rows, chans = np.nonzero(~constant)  # sample-major
        flat_acts = xp.reshape(xp.permute_dims(acts, (0, 3, 1, 2)), (n * channels, *acts.shape[1:3]))
        total = len(rows)
        # everything the loop indexes goes to the device once; each batch slices it there
        # and its scores stay there, so the loop never waits for the device
        indices, samples = model.asarray(rows * channels + chans), model.asarray(rows)
        parts = []
        for part in batches(total, size):
            r = samples[part]
            up = model.resize(xp.take(flat_acts, indices[part], axis=0), (height, width), align_corners=True)
            low = xp.min(up, axis=(1, 2), keepdims=True)
            high = xp.max(up, axis=(1, 2), keepdims=True)
            masks = (up - low) / (high - low + 1e-8)
            masked = xp.take(image, r, axis=0) * xp.astype(masks, image.dtype)[..., None]
            out = model.predict(self.with_image(x, key, masked, r))
            parts.append(xp.astype(self.scores(target, out, data, r), xp.float32))
            progress(part.stop, total)
        if parts:
            scores = model.index_add(scores, indices, xp.concat(parts))
        scores = xp.reshape(scores, (n, channels))
        shifted = xp.exp(scores - xp.max(scores, axis=1, keepdims=True))
        weights = shifted / xp.sum(shifted, axis=1, keepdims=True)
        return self.finish(x, activations, weights, classes, outputs, layer)


class AblationCAM(_LayerCAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): channels weighted by the score's drop without them.

    The relative drop of the score when one channel of the layer is ablated weighs it:
    ``w_c = (y - y_c) / y``, ``y`` the target's score, ``y_c`` its score with channel ``c``
    of the layer's activations set to the ablation value, ``L = Σ_c w_c · A_c``.

    The ablation value follows pytorch-grad-cam's ``AblationLayer``: 0 when the sample's
    activations have minimum 0 (e.g. after a ReLU), else ``min(A) - 1e7``. Differences:
    pytorch-grad-cam takes that minimum over its whole ablation batch after the earlier rows
    were ablated, so row ``j`` of a batch gets ``min(A) - (j + 1)·1e7`` and the result depends
    on its ``batch_size``; limelight uses ``min(A) - 1e7`` for every channel (the rule as
    its comment states it). In float16, where ``min(A) - 1e7`` is ``-inf``, the offset is
    256 (:func:`ablation_offset`). In bfloat16 the drops ``y - y_c`` of a deep layer are
    often a few rounding steps of ``y`` (8 bits), so the map can move by a third of its
    range: a ``UserWarning`` says so, and such a model is better run in float16 or float32
    for Ablation-CAM. Where ``y = 0`` the drop is divided
    by 1 instead (pytorch-grad-cam gives inf/NaN). A channel already equal to the ablation value everywhere (a dead ReLU
    channel) is not run: its weight is 0, and its ``A_c`` contributes 0 to the map either way.

    Edited activation rows are built on the device, ``batch_size`` rows (one sample, one
    channel ablated each) per :meth:`~limelight.core.model.SupportsActivationEdit.outputs_with`
    call; every call for a sample passes the same view of it, so a backend can keep the
    network before the layer from the sample's first call (the torch backend does).

    >>> limelight.explain(model, x, "ablationcam", layer="layer4", batch_size=64)   # doctest: +SKIP
    """

    name = "ablationcam"
    requires = (SupportsLayers, SupportsActivationEdit)

    def explain(self, x: Array, target: Target) -> Explanation:
        model, xp = self.model, self.xp
        assert isinstance(model, SupportsActivationEdit)
        progress = _progress(self.params["progress"])
        size = self.size()
        outputs = model.predict(x, batch_size=size)
        target, classes = self.fix_target(target, outputs)
        n = input_rows(x)
        data = self.target_data(target, outputs)
        original = xp.astype(self.scores(target, outputs, data, None), xp.float32)  # (n,)
        # channels are ablated in the layer's own layout (tokens: at every token, as
        # pytorch-grad-cam's AblationLayerVit); the map is drawn on the grid of positions
        layer, acts, grid = self.layer_activations(x)
        channels = int(acts.shape[-1])
        middle = (None,) * (acts.ndim - 1)  # broadcasts a per-sample value over (..., C)
        low = xp.min(acts, axis=tuple(range(1, acts.ndim)))
        value = xp.where(low == 0, xp.zeros_like(low), low - ablation_offset(xp, acts.dtype))  # (n,), acts' dtype
        inert_d = xp.all(acts == value[(slice(None), *middle)], axis=tuple(range(1, acts.ndim - 1)))  # no change
        inert = np.asarray(model.to_numpy(inert_d), bool)  # tiny control values
        ablated = xp.reshape(original[:, None] * xp.astype(inert_d, xp.float32), (-1,))
        channel_ids = model.asarray(np.arange(channels, dtype=np.int64))
        # the channels to run go to the device once; each batch slices them there and its
        # scores stay there, so the loop never waits for the device
        samples, todo = np.nonzero(~inert)  # sample-major
        starts = np.searchsorted(samples, np.arange(n + 1))
        todo_d, flat_d = model.asarray(todo), model.asarray(samples * channels + todo)
        total, parts = len(todo), []
        for i in range(n):
            # one view of the sample for all its batches: a backend may keep the network
            # before the layer from the first call for the next ones (see outputs_with)
            sample, own = take(x, slice(i, i + 1)), acts[i : i + 1]
            for part in batches(int(starts[i + 1] - starts[i]), size):
                c = todo_d[int(starts[i]) + part.start : int(starts[i]) + part.stop]
                hit = c[:, None] == channel_ids[None, :]  # (R, C) one-hot
                rows = xp.where(hit[(slice(None), *middle[1:], slice(None))], value[i], own)  # (R, ..., C)
                out = model.outputs_with(sample, layer, rows, batch_size=size)
                parts.append(xp.astype(self.scores(target, out, data, i), xp.float32))
                progress(int(starts[i]) + part.stop, total)
        if parts:
            ablated = model.index_add(ablated, flat_d, xp.concat(parts))
        drops = original[:, None] - xp.reshape(ablated, (n, channels))
        denominator = xp.where(original == 0, xp.ones_like(original), original)[:, None]
        _warn_if_rounding(xp, model, drops, original, outputs.dtype, ~inert)
        return self.finish(x, grid, drops / denominator, classes, outputs, layer)


def _warn_if_rounding(xp: Any, model: Any, drops: Array, scores: Array, dtype: Any, run: np.ndarray) -> None:
    """A warning when the outputs' dtype is coarse (bfloat16: 8 bits) and the typical score
    drop ``y - y_c`` of the channels that ran is within 16 rounding steps of ``y``: each
    drop is then a few percent off, and ``Σ_c w_c A_c``, whose terms cancel, can move by a
    third of its range (ResNet-18 ``layer3``). Checked only for such dtypes (one host copy
    of the ``(N, C)`` drops)."""
    eps = float(xp.finfo(dtype).eps)
    if eps < 1e-3 or not run.any():  # float16 and finer: no check, no sync
        return
    steps = model.to_numpy(xp.abs(drops) / (eps * xp.abs(scores)[:, None] + 1e-30))
    typical = float(np.median(np.asarray(steps)[run]))
    if typical < 16:
        warnings.warn(
            f"ablationcam: the typical score drop y - y_c is {typical:.1f} rounding steps of y in "
            f"{dtype} outputs, so the weights are a few percent off and the map can move by a "
            "third of its range; run the model in float16 or float32 for Ablation-CAM.",
            UserWarning,
            stacklevel=3,
        )


def rise_grids(
    n_masks: int, grid: int, p: float, size: tuple[int, int], seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """RISE's random draws, on the host, in a fixed order: the binary ``(n_masks, s, s)``
    grids (``rng.random(...) < p``), then the ``(n_masks, 2)`` shifts (row, column), each in
    ``[0, cell)``, from ``numpy.random.default_rng(seed)``; also the cell size
    ``ceil((H, W) / s)``."""
    cell = (math.ceil(size[0] / grid), math.ceil(size[1] / grid))
    rng = np.random.default_rng(seed)
    grids = rng.random((n_masks, grid, grid)) < p
    shifts = rng.integers(0, cell, size=(n_masks, 2))
    return grids, shifts, cell


class RISE(_ExtraPasses):
    """RISE (Petsiuk et al. 2018): per pixel, the mean score of random masks that keep it.

    ``S = Σ_i y(x ⊙ M_i) · M_i / (N · p)``: ``N`` masks, each a binary ``s × s`` grid whose
    cells are kept with probability ``p``, upsampled bilinearly (half-pixel centres, mirrored
    borders: :func:`~limelight.core.ops.bilinear_matrix` with ``border="reflect"``) to ``(s + 1) · cell`` with ``cell = ceil(H / s)`` and cropped to ``H × W`` at a random shift in
    ``[0, cell)`` (as the authors' implementation, eclique/RISE). ``y`` is the target's
    softmax probability (``scores="probability"``, as the paper) or its raw output
    (``scores="logit"``; use it when the model outputs probabilities already).

    Draws come from ``numpy.random.default_rng(seed)`` on the host (see :func:`rise_grids`),
    all before any pass, so the result does not depend on ``batch_size``; a None ``seed`` is
    drawn and recorded in ``params``. Masks are built on the device ``batch_size`` at a time.
    Post-processing: ``relu`` (default off: with a constant shift of the scores the map
    shifts by a constant, so its sign carries no meaning) and ``normalize`` (min-max).

    >>> limelight.explain(model, x, "rise", n_masks=2000, seed=0, batch_size=100)   # doctest: +SKIP
    """

    name = "rise"
    requires = ()
    defaults = MappingProxyType(
        {
            "n_masks": 4000,
            "grid": 7,
            "p": 0.5,
            "seed": None,
            "scores": "probability",
            "relu": False,
            "normalize": True,
            "progress": None,
        }
    )

    def _checked(self) -> tuple[int, int, float, int]:
        params = self.params
        n_masks = _positive_int("n_masks", params["n_masks"])
        grid = _positive_int("grid", params["grid"])
        p = params["p"]
        if isinstance(p, bool) or not isinstance(p, int | float | np.floating) or not 0 < p <= 1:
            raise ParameterError(f"p must be a probability in (0, 1], got {p!r}.")
        if params["scores"] not in ("probability", "logit"):
            raise ParameterError(f"scores must be 'probability' or 'logit', got {params['scores']!r}.")
        seed = params["seed"]
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        elif isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ParameterError(f"seed must be None or a non-negative int, got {seed!r}.")
        return n_masks, grid, float(p), int(seed)

    def _masks(
        self, grids: Array, shifts: Array, up_rows: Array, up_cols: Array, steps: tuple[Array, Array]
    ) -> Array:
        """Masks ``(B, H, W)`` on the device from ``(B, s, s)`` float32 grids, ``(B, 2)`` int
        shifts and ``steps = (arange(H), arange(W))`` (all on the device):
        ``rows_i @ grid_i @ cols_i``, where ``rows_i`` are the rows ``shift .. shift + H`` of
        the upsampling matrix (crop = row selection)."""
        xp = self.xp
        b, s = int(grids.shape[0]), int(grids.shape[1])
        height, width = int(steps[0].shape[0]), int(steps[1].shape[0])
        ri = xp.reshape(shifts[:, :1] + steps[0][None, :], (-1,))
        ci = xp.reshape(shifts[:, 1:] + steps[1][None, :], (-1,))
        rows = xp.reshape(xp.take(up_rows, ri, axis=0), (b, height, s))
        cols = xp.permute_dims(xp.reshape(xp.take(up_cols, ci, axis=0), (b, width, s)), (0, 2, 1))
        return xp.matmul(xp.matmul(rows, grids), cols)

    def explain(self, x: Array, target: Target) -> Explanation:
        model, xp = self.model, self.xp
        progress = _progress(self.params["progress"])
        key, image = self.image_input(x)
        if image.ndim != 4:
            raise InputError(f"{self.name} masks images (N, H, W, C); got inputs of shape {tuple(image.shape)}.")
        n_masks, grid, p, seed = self._checked()
        size = self.size()
        outputs = model.predict(x, batch_size=size)
        target, classes = self.fix_target(target, outputs)
        n, height, width = int(image.shape[0]), int(image.shape[1]), int(image.shape[2])
        grids, shifts, cell = rise_grids(n_masks, grid, p, (height, width), seed)
        f32 = xp.zeros((1,), dtype=xp.float32, device=image.device)
        up_rows = model.asarray(bilinear_matrix(grid, (grid + 1) * cell[0], border="reflect"), like=f32)
        up_cols = model.asarray(bilinear_matrix(grid, (grid + 1) * cell[1], border="reflect"), like=f32)
        saliency = xp.zeros((n, height * width), dtype=xp.float64, device=image.device)
        sample_ids = model.asarray(np.arange(n, dtype=np.int64))  # several inputs: the others' rows
        # the draws and the target go to the device once; each batch slices them there
        grids_d, shifts_d = model.asarray(grids), model.asarray(shifts)  # bool (n_masks, s, s), int
        steps = (model.asarray(np.arange(height, dtype=np.int64)), model.asarray(np.arange(width, dtype=np.int64)))
        data = self.target_data(target, outputs)
        total, done = n * n_masks, 0
        for part in batches(n_masks, size):
            masks = self._masks(xp.astype(grids_d[part], xp.float32), shifts_d[part], up_rows, up_cols, steps)
            flat = xp.astype(xp.reshape(masks, (int(masks.shape[0]), height * width)), xp.float64)
            keep = xp.astype(masks, image.dtype)[..., None]
            count = int(masks.shape[0])
            per_sample = []
            for i in range(n):
                own = xp.broadcast_to(sample_ids[i : i + 1], (count,))
                out = model.predict(self.with_image(x, key, image[i : i + 1] * keep, own))
                if self.params["scores"] == "probability":
                    out = xp.astype(out, xp.float64)
                    out = xp.exp(out - xp.max(out, axis=-1, keepdims=True))  # classes: the last axis
                    out = out / xp.sum(out, axis=-1, keepdims=True)
                per_sample.append(xp.astype(self.scores(target, out, data, i), xp.float64))
                done += int(masks.shape[0])
                progress(done, total)
            saliency = saliency + xp.matmul(xp.stack(per_sample), flat)
        maps = xp.reshape(saliency / (n_masks * p), (n, height, width))
        maps = self.postprocess(xp.astype(maps, xp.float32), x, upsample=False)
        return self.result(x, maps, classes[:, 0], outputs, **{**self.result_params(), "seed": seed})


@hookimpl(trylast=True)
def limelight_register_explainers(register: Any) -> None:
    """Register Score-CAM, Ablation-CAM and RISE."""
    for cls in (ScoreCAM, AblationCAM, RISE):
        register(cls)
