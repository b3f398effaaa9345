"""Chroma that a JPEG decoder replicated, interpolated as libjpeg-turbo (and so Pillow, the CPU path) does.

A 4:2:0 JPEG (almost every photo and every image of the data set) stores its colour at half the width and
half the height; 4:2:2 at half the width. libjpeg-turbo brings it to full size with "fancy upsampling", a
triangle filter. nvJPEG, behind ``torchvision.io.decode_jpeg(device="cuda")``, repeats each colour sample over
its 2x2 (or 2x1) block instead (sglang-project/sglang#34163). Colour edges then differ from the CPU path's by
up to a hundred levels. Simulated on the CPU with libjpeg-turbo's own replicating mode (simplejpeg's
``fastupsample``), that moved P(ai) by 0.0045 on average and changed 1.3 % of the labels of 1,200 images of the
data set, under the issue's 99 %.

:func:`interpolate_chroma` undoes it on the decoded pixels, on the device: each block's colour sample is read
back from its pixels (the inverse colour transform, averaged over the block and rounded to the integer the
file holds), interpolated with libjpeg's integer triangle filter, and each pixel's colour moved from the
block's sample to the interpolated one through libjpeg's own integer colour tables. Where no channel of a
pixel was clipped to 0 or 255, that gives libjpeg's pixel exactly.

Whether a decoder replicates is not assumed: :func:`replicated_samplings` decodes two small probes and
compares them with Pillow's decode, so the correction is used only where it brings a decoder's pixels
closer to Pillow's (not on the CPU, where ``decode_jpeg`` is libjpeg-turbo and interpolates already).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.nn import functional

from detector.preprocessing import SUBSAMPLING_420, SUBSAMPLING_422

#: libjpeg's fixed-point scale (jdcolor.c: SCALEBITS)
_SCALE_BITS = 16
_HALF = 1 << (_SCALE_BITS - 1)
#: RGB -> (Cb, Cr) - 128, the JFIF transform, to read a block's colour sample back from its pixels
_TO_CHROMA = torch.tensor([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float32)


def _fixed(value: float) -> int:
    return int(value * (1 << _SCALE_BITS) + 0.5)


def _colour_tables() -> torch.Tensor:
    """libjpeg's build_ycc_rgb_table: for each sample value 0-255, what Cb and Cr add to R, G and B.

    (2, 3, 256): [0] Cb's part of R, G, B; [1] Cr's. G's parts are kept unshifted, as libjpeg adds the two before
    its one shift; R's and B's are shifted already.
    """
    x = torch.arange(256, dtype=torch.int64) - 128
    cb_b = (_fixed(1.772) * x + _HALF) >> _SCALE_BITS
    cr_r = (_fixed(1.402) * x + _HALF) >> _SCALE_BITS
    cb_g = -_fixed(0.34414) * x + _HALF
    cr_g = -_fixed(0.71414) * x
    zero = torch.zeros_like(x)
    return torch.stack([torch.stack([zero, cb_g, cb_b]), torch.stack([cr_r, cr_g, zero])])


_TABLES = _colour_tables()


def _colour(cb: torch.Tensor, cr: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """What samples ``cb`` and ``cr`` (int64, (N, H, W)) add to each of R, G, B: int64 (N, 3, H, W)."""
    red = tables[1, 0][cr]
    green = (tables[0, 1][cb] + tables[1, 1][cr]) >> _SCALE_BITS
    blue = tables[0, 2][cb]
    return torch.stack([red, green, blue], dim=1)


def _edges(samples: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's neighbour before and after along ``dim``, the edge sample standing in past the ends."""
    count = samples.shape[dim]
    before = torch.cat([samples.narrow(dim, 0, 1), samples.narrow(dim, 0, count - 1)], dim)
    after = torch.cat([samples.narrow(dim, 1, count - 1), samples.narrow(dim, count - 1, 1)], dim)
    return before, after


def _interleave(even: torch.Tensor, odd: torch.Tensor, dim: int, length: int) -> torch.Tensor:
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1).narrow(dim, 0, length)


def _upsample(samples: torch.Tensor, height: int, width: int, vertical: bool) -> torch.Tensor:
    """libjpeg-turbo's fancy upsampling (jdsample.c) of int64 samples (N, h, w) to (N, height, width).

    Vertically each output row takes 3 parts of its own sample row and 1 of the nearer neighbour; then
    horizontally the same, rounded as libjpeg rounds (+8 and +7 in turn over 16 parts; h2v1: +1 and +2 over 4).
    """
    if vertical:
        above, below = _edges(samples, 1)
        sums = _interleave(3 * samples + above, 3 * samples + below, 1, height)  # 4 parts each
        left, right = _edges(sums, 2)
        return _interleave((3 * sums + left + 8) >> 4, (3 * sums + right + 7) >> 4, 2, width)
    left, right = _edges(samples, 2)
    return _interleave((3 * samples + left + 1) >> 2, (3 * samples + right + 2) >> 2, 2, width)


def interpolate_chroma(images: torch.Tensor, sampling: int) -> torch.Tensor:
    """uint8 RGB images (N, 3, H, W) whose colour was repeated over its blocks, with it interpolated instead.

    ``sampling``: :data:`~detector.preprocessing.SUBSAMPLING_420` (2x2 blocks) or ``SUBSAMPLING_422`` (2x1),
    as Pillow's ``JpegImagePlugin.get_sampling`` names them. Takes about 180 bytes of memory a pixel at its peak.
    """
    vertical = sampling == SUBSAMPLING_420
    height, width = images.shape[-2:]
    if (width + 1) // 2 <= 2:  # libjpeg-turbo repeats a row of 2 samples or fewer too (jdsample.c)
        return images
    block = (2 if vertical else 1, 2)
    pixels = images.long()
    clear = (pixels > 0) & (pixels < 255)  # channels the decoder did not clip: they still hold Y + colour
    chroma = torch.einsum("cr,nrhw->nchw", _TO_CHROMA.to(images.device), images.float())
    whole = clear.all(1, keepdim=True).float()
    share = functional.avg_pool2d(whole, block, ceil_mode=True)
    blocks = torch.where(  # a block's sample, read from its pixels that no clipping bent where it has some
        share > 0,
        functional.avg_pool2d(chroma * whole, block, ceil_mode=True) / share.clamp_min(1e-6),
        functional.avg_pool2d(chroma, block, ceil_mode=True),
    )
    cb, cr = (blocks + 128).round_().clamp_(0, 255).long().unbind(1)  # the samples the file holds
    tables = _TABLES.to(images.device)
    repeated = [sample.repeat_interleave(2, 2).narrow(2, 0, width) for sample in (cb, cr)]
    if vertical:
        repeated = [sample.repeat_interleave(2, 1).narrow(1, 0, height) for sample in repeated]
    luma = pixels - _colour(*repeated, tables)  # Y, from each channel that was not clipped
    counted = clear.sum(1, keepdim=True)
    luma = torch.where(
        counted > 0,
        torch.div((luma * clear).sum(1, keepdim=True) + counted // 2, counted.clamp_min(1), rounding_mode="floor"),
        torch.div(luma.sum(1, keepdim=True) + 1, 3, rounding_mode="floor"),
    )
    interpolated = [_upsample(sample, height, width, vertical) for sample in (cb, cr)]
    return (luma + _colour(*interpolated, tables)).clamp_(0, 255).to(torch.uint8)


def _probe(sampling: int) -> bytes:
    """A JPEG of sharp colour edges at ``sampling``, where repeated and interpolated colour differ most; of a
    photo's size, so that a decoder with a hardware path for large images (an A100's, an H100's) takes it."""
    rng = np.random.default_rng(sampling)
    cells = rng.integers(48, 208, size=(12, 16, 3), dtype=np.uint8)  # nothing near 0 or 255: no clipping
    image = Image.fromarray(cells).resize((640, 480), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, subsampling=sampling)
    return buffer.getvalue()


def _levels_apart(pixels: torch.Tensor, expected: torch.Tensor) -> tuple[int, float]:
    """How far ``pixels`` are from ``expected``: the most and the mean, in levels."""
    apart = (pixels.cpu().long() - expected.long()).abs()
    return int(apart.max()), float(apart.float().mean())


def replicated_samplings(decode: Callable[[bytes], torch.Tensor], tolerance: int = 2) -> frozenset[int]:
    """The subsamplings whose colour ``decode`` (bytes -> uint8 (3, H, W)) repeats instead of interpolating.

    ``decode`` should go the way the files will (a batch of one, where they are decoded in batches).

    For each, a probe is decoded by ``decode`` and by Pillow: one counts when ``decode``'s pixels differ from
    Pillow's by more than ``tolerance`` levels and :func:`interpolate_chroma` brings them closer, on average by
    more than half. (Not "within ``tolerance``": a decoder whose own transform rounds differently, as nvJPEG's
    may, still gains from the interpolation, and the probe's sharp edges would show its rounding.)
    """
    found = set()
    for sampling in (SUBSAMPLING_422, SUBSAMPLING_420):
        data = _probe(sampling)
        expected = torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()).permute(2, 0, 1)
        try:
            decoded = decode(data)[None]
        except RuntimeError:  # a decoder that cannot take the probe: its files fall back to Pillow anyway
            continue
        most, before = _levels_apart(decoded, expected)
        _, after = _levels_apart(interpolate_chroma(decoded, sampling), expected)
        if most > tolerance and after < before / 2:
            found.add(sampling)
    return frozenset(found)
