"""Stable Diffusion's invisible watermarks, decoded as ``invisible-watermark``'s decoder does.

Two messages are embedded with the library's ``dwtDct`` method by the reference code, each by
its own script generation, so both are looked for:

* Stable Diffusion 1.x: CompVis ``scripts/txt2img.py`` (and the many tools copied from it) marks
  every output with the bytes ``StableDiffusionV1`` (136 bits);
* SDXL: Stability AI's ``generative-models`` (``sgm``, ``WATERMARK_MESSAGE``) and diffusers' SDXL
  pipelines mark theirs with a fixed 48-bit message.

dwtDct stores one bit per 4x4 block of the Haar-wavelet approximation of the image's U (chroma)
channel, block n carrying bit n modulo the message length, so the per-block votes are computed
once and counted for each message.  :func:`decode_bits` reads a message back as the library's
decoder does, vectorised (docs/provenance.md has the command that measures the cost).  The mark
survives PNG, lossless WebP and JPEG without chroma subsampling; JPEG's usual 4:2:0 subsampling
halves the chroma resolution and erases it below the highest qualities, as does resizing or
cropping off the block grid, so absence proves nothing.

Where the mark cannot be, the full-size decode is skipped (:func:`check`; the measurements behind
each rule are in docs/provenance.md, ``python -m provenance.benchmark --data DIR --survival``):
images without colour or under 256x256 are ruled out from the header; a 4:2:0 JPEG (nearly every
photo) is first read at half scale, where its chroma is stored (:func:`half_scale_bit_errors`, a
fifth of the cost), and decoded at full size only when that read comes near a message.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from math import comb

import numpy as np
from PIL import Image, JpegImagePlugin

from detector.preprocessing import SUBSAMPLING_420, DecodedImage, ImageDecodeError, draft_half_scale, load_image
from provenance.evidence import AI, NEUTRAL, SD_WATERMARK, Evidence

#: the SDXL message: ``WATERMARK_MESSAGE`` of Stability AI's ``sgm`` and of diffusers' SDXL watermarker
SD_MESSAGE = 0b101100111110110010010000011110111011000110011110
SD_BITS = np.array([int(bit) for bit in bin(SD_MESSAGE)[2:]], dtype=np.uint8)
#: the SD 1.x message: ``wm = "StableDiffusionV1"`` in CompVis ``scripts/txt2img.py``, set as ``bytes``
#: (the library's encoder turns bytes into bits most significant first, as ``unpackbits`` does)
SD1_BITS = np.unpackbits(np.frombuffer(b"StableDiffusionV1", dtype=np.uint8))
#: the library refuses smaller images (fewer blocks than it needs to spread the message)
MIN_PIXELS = 256 * 256


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per known message
class Message:
    """A message some generator embeds, and how many decoded bits may differ from it and still count."""

    #: who embeds it, as the evidence sentence names it
    name: str
    bits: np.ndarray = field(repr=False)
    #: chosen from the bit errors measured on real marked and unmarked files (docs/provenance.md)
    max_errors: int

    @property
    def false_positive_rate(self) -> float:
        """The chance that an unmarked image decodes this close, were its bits fair coin flips.

        Fair coins are the worst case: an image whose votes lean one way decodes to (nearly) all
        zeros or all ones, which both messages are far from (SD 1.x's has 68 ones in 136).
        """
        length = len(self.bits)
        return sum(comb(length, errors) for errors in range(self.max_errors + 1)) / 2**length


#: 33 of 136 gives the same false-positive rate as 4 of 48 (~7e-10 each). Measured on the originals of
#: realvsai-v1 (``python -m provenance.benchmark --data DIR --bit-errors``, docs/provenance.md): 373 of
#: 482 CompVis SD 1.x outputs decode within 33 errors, while the closest of 566 unmarked files (photos,
#: other generators) is 54 errors away; the other SD 1.x outputs spread evenly up to 68 (content that
#: drowns the mark), so a larger tolerance buys few files at a much higher false-positive rate
#: (41: 28 more files, ~2e-6).
SD1 = Message("SD 1.x (CompVis scripts)", SD1_BITS, max_errors=33)
#: 4 of 48: a random 48-bit pattern comes this close with probability ~8e-10
SDXL = Message("SDXL (Stability AI scripts)", SD_BITS, max_errors=4)
MESSAGES: tuple[Message, ...] = (SD1, SDXL)

#: the SD scripts' ``WatermarkEncoder`` defaults for ``dwtDct``: U-channel scale, 4x4 blocks
U_SCALE = 36.0
BLOCK = 4

#: the half-scale read of a 4:2:0 JPEG (:func:`half_scale_bit_errors`) sends the image to the full decode
#: when it is at most this many bits from a message. Measured on marked files re-encoded as 4:2:0 JPEGs
#: (``python -m provenance.benchmark --data DIR --survival 40``, docs/provenance.md): where the full decode
#: finds the mark, the half-scale read is usually closer (it reads the chroma where JPEG stores it), but at
#: qualities 90-92, where one file in a hundred keeps its mark at all, it read up to 54 of 136 bits off;
#: SDXL-marked ones at most 2 of 48. Unmarked images read like coin flips (68 / 24 bits off): about 5 % of
#: them come within these limits and get the full decode (6 % of coin-flip patterns).
HALF_SCALE_MAX_ERRORS: dict[Message, int] = {SD1: 58, SDXL: 16}
#: image modes without chroma: the U channel is flat, there is nothing to decode
_NO_COLOUR = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def block_votes(bgr: np.ndarray) -> np.ndarray:
    """Each 4x4 block's vote (0 or 1), in the order ``invisible-watermark``'s dwtDct decoder visits them.

    The same computation as ``imwatermark.maxDct.EmbedMaxDct.decode`` (YUV, Haar DWT of the U
    channel, in each 4x4 block of the approximation the largest non-DC coefficient modulo the
    scale), done on all blocks at once with NumPy instead of a Python loop per block, and with only
    the DWT band it reads: the library takes ~0.1 s per megapixel, this a few ms.  The votes do not
    depend on the message length, so one pass serves every message.
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
    # blocks in row-major order, as the library visits them
    largest = np.abs(blocks[:, 1:]).argmax(axis=1) + 1
    values = np.abs(blocks[np.arange(len(blocks)), largest])
    return (values % U_SCALE > 0.5 * U_SCALE).astype(np.float64)


def bits_from_votes(votes: np.ndarray, length: int) -> np.ndarray:
    """The ``length``-bit message the library's decoder reads from these votes: block n votes for bit n % length.

    The votes (0 or 1, any dtype) are counted per bit in rows of ``length`` blocks, in integers: the same
    totals as the library's per-bit sums, without its float weights.
    """
    votes = np.asarray(votes) != 0
    whole = len(votes) // length * length
    totals = np.count_nonzero(votes[:whole].reshape(-1, length), axis=0).astype(np.int64)
    rest = votes[whole:]
    totals[: len(rest)] += rest
    counts = np.full(length, len(votes) // length, dtype=np.int64)
    counts[: len(rest)] += 1
    return (totals / counts * 255 > 127).astype(np.uint8)


def decode_bits(bgr: np.ndarray, length: int = len(SD_BITS)) -> np.ndarray:
    """The ``length`` bits that ``invisible-watermark``'s dwtDct decoder reads from a BGR uint8 image.

    Equal to ``WatermarkDecoder("bits", length).decode(bgr, "dwtDct")``; the tests check the two
    agree bit for bit on marked (both messages) and unmarked images.
    """
    return bits_from_votes(block_votes(bgr), length)


def bit_errors(bgr: np.ndarray) -> dict[Message, int]:
    """How many bits each known message differs from what the image decodes to (one pass over the pixels)."""
    votes = block_votes(bgr)
    return {
        message: int(np.count_nonzero(bits_from_votes(votes, len(message.bits)) != message.bits))
        for message in MESSAGES
    }


def _votes_from_u(u: np.ndarray) -> np.ndarray:
    """Votes from an approximation band given as the U channel at half scale (``2 * U``).

    The band is non-negative here, so the largest non-DC magnitude of a block is its largest non-DC
    value: the elementwise maximum over the block's last three rows and the rest of its first row
    (elementwise maxima of whole planes: far faster in NumPy than a reduction over 16-element rows).
    """
    block_rows, block_cols = u.shape[0] // BLOCK, u.shape[1] // BLOCK
    # a strided view (splitting both axes needs no copy)
    rows = u[: block_rows * BLOCK, : block_cols * BLOCK].reshape(block_rows, BLOCK, block_cols, BLOCK)
    lower = np.maximum(np.maximum(rows[:, 1], rows[:, 2]), rows[:, 3])  # (block_rows, block_cols, 4)
    largest = np.maximum(
        np.maximum(np.maximum(lower[..., 0], lower[..., 1]), np.maximum(lower[..., 2], lower[..., 3])),
        np.maximum(np.maximum(rows[:, 0, :, 1], rows[:, 0, :, 2]), rows[:, 0, :, 3]),
    ).ravel()
    # (2 * U) % 36 > 18, in integers: U % 18 > 9; blocks in row-major order, as the library visits them
    return largest % (int(U_SCALE) // 2) > int(U_SCALE) // 4


def half_scale_bit_errors(image: Image.Image, half: Image.Image | None = None) -> dict[Message, int]:
    """Bit errors of each message as read from a JPEG decoded at half scale (an opened, unloaded image).

    The Haar approximation band that the decoder reads is twice the 2x2 average of the U channel,
    which is what a half-scale JPEG decode delivers (libjpeg scales in the DCT domain; a 4:2:0 file
    stores its chroma at exactly that scale, so nothing is upsampled): the same votes, read from a
    quarter of the pixels without the full-size decode.  Not bit-exact with the library's decoder, so
    it only rules images out; the full decode decides.

    ``half``: the same file already decoded at half scale, in RGB (the web app's model decodes many
    photos at that scale: :class:`~detector.preprocessing.DecodedImage` with ``scale`` 2); it is read
    instead of decoding the file again.
    """
    import cv2

    width, height = image.size
    if half is None or half.size != ((width + 1) // 2, (height + 1) // 2):
        draft_half_scale(image)
        half = image
    rgb = np.asarray(half if half.mode == "RGB" else half.convert("RGB"))
    # the approximation band of the full-size image is (height // 4 * 2) x (width // 4 * 2)
    u = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)[: height // 4 * 2, : width // 4 * 2, 1]
    votes = _votes_from_u(u)
    return {
        message: int(np.count_nonzero(bits_from_votes(votes, len(message.bits)) != message.bits))
        for message in MESSAGES
    }


def _open(data: bytes) -> Image.Image | None:
    """The header, parsed (no pixels decoded); None for what Pillow cannot open. Raises for a bomb."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise
    except Exception:  # noqa: BLE001 - not an image Pillow knows, or a header it refuses
        return None


def _not_checked(max_pixels: int) -> list[Evidence]:
    finding = f"Stable Diffusion watermark: not checked (image over {max_pixels / 1e6:.1f} megapixels)"
    return [Evidence(SD_WATERMARK, finding, NEUTRAL)]


def _cannot_carry(image: Image.Image) -> bool:
    """From the header alone: no chroma, or too small for the library to have embedded anything."""
    width, height = image.size
    return image.mode in _NO_COLOUR or width * height < MIN_PIXELS


def _is_420_upright(image: Image.Image) -> bool:
    """A colour JPEG with 4:2:0 chroma, not rotated on decoding (else the full decode's grid is another one)."""
    return (
        image.format == "JPEG"
        and image.mode == "RGB"
        and JpegImagePlugin.get_sampling(image) == SUBSAMPLING_420
        and image.getexif().get(0x0112, 1) == 1
    )


def _rules_out_at_half_scale(image: Image.Image, decoded: DecodedImage | None) -> bool:
    """A 4:2:0 JPEG whose half-scale read is far from every message."""
    if not _is_420_upright(image):
        return False
    half = decoded.image if decoded is not None and decoded.scale == 2 else None
    errors = half_scale_bit_errors(image, half)
    return all(errors[message] > HALF_SCALE_MAX_ERRORS[message] for message in MESSAGES)


def reads(decoded: DecodedImage, max_pixels: int) -> bool:
    """Whether :func:`check` may read these pixels of a file instead of decoding it (so they are worth keeping).

    The full-size decode (``scale`` 1) or the half-scale read of a 4:2:0 JPEG (2), of a file within
    ``max_pixels``; the smallest stored size that decodes to this size is the one held to the cap.
    """
    if decoded.scale not in (1, 2):
        return False
    width, height = decoded.image.size
    least = ((width - 1) * decoded.scale + 1) * ((height - 1) * decoded.scale + 1)
    return least <= max_pixels


def check(data: bytes, max_pixels: int, decoded: DecodedImage | None = None) -> list[Evidence]:
    """Strong ``ai`` evidence when the image carries a Stable Diffusion watermark; nothing otherwise.

    The image is decoded at full size only where a mark can be: not when its header rules the mark
    out, nor when a 4:2:0 JPEG's half-scale read is far from every message.  ``decoded``: the same
    file as the web app's model decoded it (:func:`detector.preprocessing.decode_image`); where its
    scale is the one a step needs (2 for the half-scale read, 1 for the full decode), its pixels are
    read instead of decoding the file again, with the same result.
    """
    try:
        image = _open(data)
    except Image.DecompressionBombError:  # Pillow's own guard, far above any pixel cap
        return _not_checked(max_pixels)
    if image is None:
        return []
    with image:
        width, height = image.size
        if _cannot_carry(image):
            return []
        if width * height > max_pixels:
            return _not_checked(max_pixels)
        try:
            if _rules_out_at_half_scale(image, decoded):
                return []
        except Exception:  # noqa: BLE001 - a file that fails here fails the full decode too, or gets it
            pass
    if decoded is not None and decoded.scale == 1:
        full = decoded.image  # what load_image(data) returns: the model decoded every pixel already
    else:
        try:
            full = load_image(data, max_pixels=max_pixels)
        except ImageDecodeError:
            return []
    if full.width * full.height < MIN_PIXELS:
        return []
    bgr = np.ascontiguousarray(np.asarray(full)[:, :, ::-1])
    found = [(message, errors) for message, errors in bit_errors(bgr).items() if errors <= message.max_errors]
    return [
        Evidence(
            SD_WATERMARK,
            f"Stable Diffusion invisible watermark decoded: the {message.name} message, "
            f"{len(message.bits) - errors} of {len(message.bits)} bits match",
            AI,
            strong=True,
        )
        for message, errors in found
    ]
