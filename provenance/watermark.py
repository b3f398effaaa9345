"""Stable Diffusion's default invisible watermark, decoded as ``invisible-watermark``'s decoder does.

The Stable Diffusion reference scripts (and the diffusers pipelines that follow them) embed a fixed
48-bit message with the library's ``dwtDct`` method: one bit per 4x4 block of the Haar-wavelet
approximation of the image's U (chroma) channel.  :func:`decode_bits` reads it back as the library's
decoder does, vectorised (docs/provenance.md has the command that measures the cost).  It survives
PNG and JPEG without chroma subsampling; JPEG's usual 4:2:0 subsampling halves the chroma resolution and erases it, as
does resizing or cropping off the block grid, so absence proves nothing.
"""

from __future__ import annotations

import numpy as np

from detector.preprocessing import ImageDecodeError, load_image
from provenance.evidence import AI, NEUTRAL, SD_WATERMARK, Evidence

#: the message of ``scripts/txt2img.py`` / ``sgm`` in Stability AI's repositories (WATERMARK_MESSAGE)
SD_MESSAGE = 0b101100111110110010010000011110111011000110011110
SD_BITS = np.array([int(bit) for bit in bin(SD_MESSAGE)[2:]], dtype=np.uint8)
#: bits allowed to differ: a random 48-bit pattern comes this close with probability ~8e-10
MAX_BIT_ERRORS = 4
#: the library refuses smaller images (fewer blocks than it needs to spread the message)
MIN_PIXELS = 256 * 256


#: the SD scripts' ``WatermarkEncoder`` defaults for ``dwtDct``: U-channel scale, 4x4 blocks
U_SCALE = 36.0
BLOCK = 4


def decode_bits(bgr: np.ndarray, length: int = len(SD_BITS)) -> np.ndarray:
    """The ``length`` bits that ``invisible-watermark``'s dwtDct decoder reads from a BGR uint8 image.

    The same computation as ``imwatermark.maxDct.EmbedMaxDct(wmLen=length).decode`` (YUV, Haar DWT of
    the U channel, in each 4x4 block of the approximation the largest non-DC coefficient modulo the
    scale, votes averaged per bit), done on all blocks at once with NumPy instead of a Python loop
    per block, and with only the DWT band it reads: the library takes ~0.1 s per megapixel, this
    a few ms. A test checks the two agree bit for bit on watermarked and unmarked images.
    """
    import cv2  # OpenCV and PyWavelets, as the library uses them: only this check needs them
    import pywt

    rows, cols = bgr.shape[0] // 4 * 4, bgr.shape[1] // 4 * 4
    u = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[:rows, :cols, 1].astype(np.float64)
    # pywt.dwt2(u, "haar")[0], the only band the decoder reads, with PyWavelets' own filter taps in
    # its own order of operations (rows, then columns), so the result is identical to the last bit:
    # votes sit on exact half-integers, where a different rounding would flip them
    low_second, low_first = pywt.Wavelet("haar").dec_lo
    by_rows = low_second * u[1::2] + low_first * u[0::2]
    approximation = low_second * by_rows[:, 1::2] + low_first * by_rows[:, 0::2]
    block_rows, block_cols = approximation.shape[0] // BLOCK, approximation.shape[1] // BLOCK
    blocks = (
        approximation[: block_rows * BLOCK, : block_cols * BLOCK]
        .reshape(block_rows, BLOCK, block_cols, BLOCK)
        .swapaxes(1, 2)
        .reshape(-1, BLOCK * BLOCK)
    )
    # blocks in row-major order, as the library visits them; block n votes for bit n % length
    largest = np.abs(blocks[:, 1:]).argmax(axis=1) + 1
    values = np.abs(blocks[np.arange(len(blocks)), largest])
    votes = (values % U_SCALE > 0.5 * U_SCALE).astype(np.float64)
    bit_of_block = np.arange(len(blocks)) % length
    totals = np.bincount(bit_of_block, weights=votes, minlength=length)
    counts = np.bincount(bit_of_block, minlength=length)
    return (totals / counts * 255 > 127).astype(np.uint8)


def check(data: bytes, max_pixels: int) -> list[Evidence]:
    """Strong ``ai`` evidence when the image carries Stable Diffusion's watermark; nothing otherwise."""
    try:
        image = load_image(data, max_pixels=max_pixels)
    except ImageDecodeError as error:
        if error.reason == "too_large":
            return [
                Evidence(
                    SD_WATERMARK,
                    f"Stable Diffusion watermark: not checked (image over {max_pixels / 1e6:.1f} megapixels)",
                    NEUTRAL,
                )
            ]
        return []
    width, height = image.size
    if width * height < MIN_PIXELS:
        return []
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    errors = int(np.count_nonzero(decode_bits(bgr) != SD_BITS))
    if errors > MAX_BIT_ERRORS:
        return []
    return [
        Evidence(
            SD_WATERMARK,
            f"Stable Diffusion invisible watermark decoded ({len(SD_BITS) - errors} of {len(SD_BITS)} bits match)",
            AI,
            strong=True,
        )
    ]
