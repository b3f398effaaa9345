"""The core's preprocessing as tensor operations on a device: nvJPEG decoding, resize and normalisation on the GPU.

On a GPU the model is not the bottleneck, decoding is (issue #14: ~8,500 JPEGs/s decoded and resized on one
H200 with nvJPEG, ~930/s with Pillow on 16 cores). This module gives the same model input as
:func:`detector.preprocessing.preprocess`, in two steps so that a caller can overlap them with the GPU's work:

1. :meth:`DevicePreprocessor.stage`, on the CPU, per file, thread-safe: read the bytes, open the header
   with the core's :func:`~detector.preprocessing.open_image` (the same refusals: empty, not an image,
   more than ``max_pixels`` from the header before any pixel is decoded) and pick the decoder. A
   complete baseline JPEG in RGB or grey goes to the device decoder as bytes; everything else (PNG,
   WebP, GIF, TIFF, BMP, CMYK, progressive or arithmetic-coded JPEG, a JPEG cut short, MPO) is decoded
   by the core's :func:`~detector.preprocessing.load_image` (Pillow, draft mode, EXIF orientation,
   16-bit, palette and alpha handled as everywhere else).
2. :meth:`DevicePreprocessor.batch`, per batch: ``torchvision.io.decode_jpeg(..., device=...)`` decodes
   the JPEGs together, in parts of at most :data:`DECODE_BYTES` of full-size pixels (nvJPEG on CUDA;
   libjpeg-turbo when the device is the CPU, which is how the tests run this pipeline without a GPU), the
   EXIF orientation read from the header is applied, each decode is box-reduced as draft mode would have
   reduced it, Pillow's results are uploaded, then every image is resized to the model's input size with antialiasing
   (``torch.nn.functional.interpolate(..., antialias=True)``: Pillow's resampling filter; rounded to whole
   levels as Pillow's 8-bit resize is) and normalised with the model's mean and std, on the device.

A JPEG the device decoder refuses is decoded by Pillow instead, so a file is refused only for a reason
the CPU path would refuse it for. Pillow's draft mode (decoding a large JPEG at 1/2-1/8 scale) has no
nvJPEG counterpart: the device decodes at full size, then box-reduces by as much as draft mode would
have (:func:`~detector.preprocessing.draft_for_model`, read from the header) before the resize, so for a
photo far larger than the input the two paths give pixels a few levels apart, not identical
(``tests/test_gpu.py`` measures them, and what the paths do to P(ai) on real images).

torchvision deprecated its image decoders in 0.29 in favour of TorchCodec; this module keeps to
``torchvision.io`` because it is what the pinned versions ship (TorchCodec is not a dependency), and
silences only that one deprecation warning.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import JpegImagePlugin
from torch.nn import functional
from torchvision.io import ImageReadMode, decode_jpeg

from detector.jpeg_chroma import interpolate_chroma, replicated_samplings
from detector.preprocessing import (
    DEFAULT_MAX_PIXELS,
    SUBSAMPLING_420,
    ImageDecodeError,
    ImageSource,
    PreprocessConfig,
    draft_for_model,
    load_image,
    open_image,
)

warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning
)
# the encoded file is handed to the decoder as a tensor over the file's own bytes, which nothing writes to:
# a copy cost more than the whole header check (235 us for 97 KB here, against 24 us for open_image)
warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)

#: the EXIF orientation tag (what ``PIL.ImageOps.exif_transpose`` reads)
ORIENTATION = 0x0112
#: Pillow modes of the JPEGs the device decoder takes (YCbCr/RGB and grey; CMYK/YCCK go to Pillow)
DEVICE_MODES = frozenset({"RGB", "L"})
#: start-of-frame markers of baseline and extended sequential Huffman JPEG, what nvJPEG decodes everywhere
DEVICE_FRAMES = frozenset({0xC0, 0xC1})
#: how torch's interpolate resamples like Pillow: its antialiased filters, and Pillow's nearest neighbour
_INTERPOLATION = {"bilinear": ("bilinear", True), "bicubic": ("bicubic", True), "nearest": ("nearest-exact", False)}
#: most bytes of float32 pixels resized in one interpolate call (a group of large photos goes in slices)
_RESIZE_BYTES = 256 * 1024 * 1024
#: bytes a pixel takes in float32 RGB, as the resize and the box reduction hold it
_FLOAT_PIXEL_BYTES = 3 * 4
#: most bytes of device memory :func:`~detector.jpeg_chroma.interpolate_chroma` takes in one call (~180 a pixel)
_CHROMA_BYTES = 1024 * 1024 * 1024
_CHROMA_BYTES_PER_PIXEL = 180
#: most bytes of full-size RGB the device decoder writes in one call: a batch's JPEGs go in parts, each reduced
#: as draft mode would before the next part is decoded, so a batch of 256 photos of 64 MP (192 MB each decoded:
#: 49 GB) never holds more than this at full size on the card
DECODE_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG for the device decoder: its bytes as a CPU tensor, and the EXIF orientation to apply after."""

    data: torch.Tensor
    orientation: int
    #: the file, for Pillow when the device decoder refuses it
    raw: bytes
    #: how far the CPU path reduces this file before its resize (draft mode's scale times the box
    #: reduction after it, :func:`~detector.preprocessing.draft_for_model`): the full-size decode is
    #: box-reduced by as much
    reduction: int = 1
    #: width x height at full size, from the header: what the device decoder will write, times 3
    pixels: int = 0
    #: the chroma subsampling, as Pillow's ``JpegImagePlugin.get_sampling`` names it (2: 4:2:0; -1: unusual)
    sampling: int = -1


#: what :meth:`DevicePreprocessor.stage` makes of one file: bytes for the device decoder, Pillow's pixels
#: (uint8, (3, H, W), on the CPU), or the reason the file has no model input
Staged = EncodedJpeg | torch.Tensor | ImageDecodeError | OSError


@dataclass
class DeviceBatch:
    """A batch's model input on the device, and each refusal by position."""

    size: int
    #: positions in the batch of the rows of ``inputs``
    positions: list[int] = field(default_factory=list)
    #: (len(positions), 3, S, S) float32 on the device, or None when nothing decoded
    inputs: torch.Tensor | None = None
    errors: dict[int, ImageDecodeError | OSError] = field(default_factory=dict)
    #: how many images the device decoder decoded (the rest went through Pillow)
    device_decoded: int = 0

    def rows(self) -> list[torch.Tensor | ImageDecodeError | OSError]:
        """Per position of the batch: its row of ``inputs`` (a view, on the device) or its refusal."""
        rows: dict[int, torch.Tensor] = {}
        if self.inputs is not None:
            rows = dict(zip(self.positions, self.inputs, strict=True))
        return [rows[i] if i in rows else self.errors[i] for i in range(self.size)]


def resolved_device(device: torch.device | str) -> torch.device:
    """``device`` as the tensors placed on it name it: ``cuda`` becomes ``cuda:0`` (the current GPU), ``cpu:0``
    becomes ``cpu``.

    ``torch.device("cuda") != torch.device("cuda:0")``, yet a tensor sent to ``cuda`` says ``cuda:0``: a runtime
    that compares a tensor's device with the one it was given must hold the resolved one, or it takes every
    tensor already on the GPU for a stranger (and ``pin_memory`` raises for it).
    """
    return torch.empty(0, device=device).device


def same_size_slices(
    keys: dict[int, tuple[int, ...]], bytes_per_pixel: int, budget: int
) -> Iterator[tuple[tuple[int, ...], list[int]]]:
    """The indices of images that go through one tensor call together: those of one key (height, width, and
    whatever else the call needs alike), in slices of at most ``budget`` bytes at ``bytes_per_pixel``
    (at least one image a slice)."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, key in keys.items():
        groups[key].append(index)
    for key, members in groups.items():
        height, width = key[:2]
        step = max(1, budget // (bytes_per_pixel * height * width))
        for first in range(0, len(members), step):
            yield key, members[first : first + step]


def read_source(source: ImageSource) -> bytes:
    """The whole file: bytes as given, a path read, or an open binary file read to its end."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        return Path(source).read_bytes()
    return source.read()


def jpeg_frame(data: bytes) -> int | None:
    """The start-of-frame marker of a complete JPEG (0xC0 baseline, 0xC2 progressive...), else None.

    Walks the marker segments up to the start of scan; the file counts as complete when an end-of-image
    marker follows the scan (entropy-coded data cannot contain one: a 0xFF there is always stuffed). A
    JPEG cut short, or segments that do not add up, give None, and Pillow decodes (or refuses) the file.
    """
    if data[:2] != b"\xff\xd8":
        return None
    frame, position, end = None, 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        if marker == 0xDA:  # start of scan
            return frame if data.rfind(b"\xff\xd9") > position else None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = marker
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """A (C, H, W) image turned upright by its EXIF orientation, as ``PIL.ImageOps.exif_transpose`` does."""
    if orientation == 2:  # mirrored
        return image.flip(-1)
    if orientation == 3:  # upside down
        return image.flip(-2, -1)
    if orientation == 4:  # flipped top to bottom
        return image.flip(-2)
    if orientation == 5:  # transposed
        return image.transpose(-2, -1)
    if orientation == 6:  # turned a quarter anticlockwise: turn it clockwise
        return torch.rot90(image, -1, (-2, -1))
    if orientation == 7:  # transversed
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # turned a quarter clockwise
        return torch.rot90(image, 1, (-2, -1))
    return image


class DevicePreprocessor:
    """The model input of a batch of files, decoded, resized and normalised on ``device``."""

    def __init__(
        self,
        config: PreprocessConfig,
        device: torch.device | str = "cuda",
        *,
        nvjpeg: bool = True,
        decode_bytes: int = DECODE_BYTES,
    ) -> None:
        if config.resample not in _INTERPOLATION:
            raise ValueError(
                f"resample {config.resample!r} has no device implementation ({', '.join(_INTERPOLATION)} do): "
                "run this model with the CPU preprocessing"
            )
        self.config = config
        self.device = resolved_device(device)
        #: False: every file goes through Pillow (resize and normalisation still on the device)
        self.nvjpeg = nvjpeg
        #: most bytes of full-size pixels decoded in one call (:data:`DECODE_BYTES`)
        self.decode_bytes = decode_bytes
        self._mode, self._antialias = _INTERPOLATION[config.resample]
        #: the subsamplings whose colour the device decoder repeats over each block where libjpeg-turbo (Pillow)
        #: interpolates it: nvJPEG's, found by decoding probes (:func:`~detector.jpeg_chroma.replicated_samplings`);
        #: its decodes of those get the colour interpolated as the CPU path's decoder does
        self.replicated = replicated_samplings(self._decode_probe) if nvjpeg else frozenset()
        self._scale = torch.as_tensor(config._scale, device=self.device).view(1, 3, 1, 1)
        self._offset = torch.as_tensor(config._offset, device=self.device).view(1, 3, 1, 1)

    def _decode_probe(self, data: bytes) -> torch.Tensor:
        """A probe of :func:`~detector.jpeg_chroma.replicated_samplings`, decoded as a batch's files are."""
        self._drain()
        encoded = [torch.frombuffer(data, dtype=torch.uint8)]
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)[0]

    # --- on the CPU, per file ------------------------------------------------------------------

    def stage(self, source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Staged:
        """Read one file and check it from its header; decode it with Pillow unless the device decoder takes it.

        Never raises for a bad or unreadable file: the refusal is returned, as the scanner records it.
        """
        try:
            data = read_source(source)
        except OSError as error:
            return error
        try:
            header = open_image(data, max_pixels=max_pixels)
        except ImageDecodeError as error:
            return error
        if (
            self.nvjpeg
            and header.format == "JPEG"
            and header.mode in DEVICE_MODES
            and jpeg_frame(data) in DEVICE_FRAMES
        ):
            try:
                orientation = int(header.getexif().get(ORIENTATION, 1))
            except Exception:  # noqa: BLE001 (a broken EXIF block: let Pillow decide, as the CPU path does)
                return self._pillow(data, max_pixels)
            pixels = header.width * header.height  # before the draft mode below changes the header's size
            scale, reduction = draft_for_model(header, self.config.input_size)
            data_tensor = torch.frombuffer(data, dtype=torch.uint8)  # no copy: read only, and ``raw`` keeps it
            sampling = JpegImagePlugin.get_sampling(header)
            return EncodedJpeg(data_tensor, orientation, data, scale * reduction, pixels, sampling)
        return self._pillow(data, max_pixels)

    def _pillow(self, data: bytes, max_pixels: int) -> torch.Tensor | ImageDecodeError:
        """The core's decoder (draft mode, EXIF orientation, RGB): uint8 (3, H, W) on the CPU."""
        try:
            image = load_image(data, draft_size=self.config.input_size, max_pixels=max_pixels)
        except ImageDecodeError as error:
            return error
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

    # --- on the device, per batch --------------------------------------------------------------

    def batch(self, staged: Sequence[Staged], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DeviceBatch:
        """Decode the staged JPEGs on the device, upload Pillow's, resize and normalise them all."""
        result = DeviceBatch(size=len(staged))
        images: dict[int, torch.Tensor] = {}
        jpegs: dict[int, EncodedJpeg] = {}
        for position, item in enumerate(staged):
            if isinstance(item, EncodedJpeg):
                jpegs[position] = item
            elif isinstance(item, torch.Tensor):
                images[position] = item.to(self.device, non_blocking=True)
            else:
                result.errors[position] = item
        decoded_jpegs, result.device_decoded = self._decode_jpegs(jpegs, max_pixels)
        for position, decoded in decoded_jpegs.items():
            if isinstance(decoded, ImageDecodeError):
                result.errors[position] = decoded
            else:
                images[position] = decoded
        result.positions = sorted(images)
        if result.positions:
            result.inputs = self.to_inputs([images[position] for position in result.positions])
        return result

    def __call__(self, sources: Sequence[ImageSource], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DeviceBatch:
        """:meth:`stage` each file, then :meth:`batch` them."""
        return self.batch([self.stage(source, max_pixels=max_pixels) for source in sources], max_pixels=max_pixels)

    def _decode_jpegs(
        self, jpegs: dict[int, EncodedJpeg], max_pixels: int
    ) -> tuple[dict[int, torch.Tensor | ImageDecodeError], int]:
        """The JPEGs upright and reduced as the CPU path's draft mode reduces them, and how many the device
        decoder decoded; in parts of at most :attr:`decode_bytes` of full-size pixels, each part reduced
        before the next is decoded."""
        results: dict[int, torch.Tensor | ImageDecodeError] = {}
        on_device = 0
        for part in self._parts(jpegs):
            decoded, full_size = self._decode_part(part, max_pixels)
            results.update(self._reduced(decoded, {position: part[position].reduction for position in full_size}))
            on_device += len(full_size)
            del decoded  # the part's full-size pixels, freed before the next part is decoded
        return results, on_device

    def _parts(self, jpegs: dict[int, EncodedJpeg]) -> list[dict[int, EncodedJpeg]]:
        """The JPEGs in order, in parts whose full-size pixels fit :attr:`decode_bytes` (a larger one alone)."""
        parts: list[dict[int, EncodedJpeg]] = []
        room = 0
        for position, jpeg in jpegs.items():
            size = 3 * jpeg.pixels
            if not parts or size > room:
                parts.append({})
                room = self.decode_bytes
            parts[-1][position] = jpeg
            room -= size
        return parts

    def _decode_part(
        self, jpegs: dict[int, EncodedJpeg], max_pixels: int
    ) -> tuple[dict[int, torch.Tensor | ImageDecodeError], list[int]]:
        """The JPEGs upright, in one call to the device decoder, and the positions it decoded (at full size).

        One bad file fails the whole call: then they go one by one, and Pillow takes those it refuses
        (at draft mode's scale already).
        """
        self._drain()
        try:
            decoded = decode_jpeg([jpeg.data for jpeg in jpegs.values()], mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            results = {position: self._decode_one(jpeg, max_pixels) for position, jpeg in jpegs.items()}
            full_size = [position for position, (_, on_device) in results.items() if on_device]
            return {position: image for position, (image, _) in results.items()}, full_size
        decoded = self._interpolated(decoded, list(jpegs.values()))
        upright = zip(jpegs.items(), decoded, strict=True)
        return {position: orient(image, jpeg.orientation) for (position, jpeg), image in upright}, list(jpegs)

    def _decode_one(self, jpeg: EncodedJpeg, max_pixels: int) -> tuple[torch.Tensor | ImageDecodeError, bool]:
        """One JPEG by the device decoder, or by Pillow when it refuses (True: the device decoded it)."""
        self._drain()
        try:
            decoded = decode_jpeg(jpeg.data, mode=ImageReadMode.RGB, device=self.device)
            return orient(self._interpolated([decoded], [jpeg])[0], jpeg.orientation), True
        except RuntimeError:
            pillow = self._pillow(jpeg.raw, max_pixels)  # drafted and upright already, or the CPU path's refusal
            return (pillow if isinstance(pillow, ImageDecodeError) else pillow.to(self.device)), False

    def _interpolated(self, decoded: list[torch.Tensor], jpegs: list[EncodedJpeg]) -> list[torch.Tensor]:
        """The device decoder's images (as stored, before orientation: the colour blocks start at the stored
        image's corner) with the colour it repeated over each block interpolated as libjpeg-turbo does, where
        the CPU path decodes the file whole; images of one size and subsampling together.

        A 4:2:0 file that draft mode reduces keeps the repeated colour: at 1/2, 1/4 or 1/8 scale libjpeg-turbo
        decodes its colour straight to the reduced size, one sample a pixel, with no interpolation, and the
        box reduction of repeated samples gives just that. (Interpolated, a 1024x768 photo's input was 0.30
        levels from the CPU path's on average, against 0.13 left repeated; a 400x300 one's, decoded whole,
        0.006 against 0.43.) A drafted 4:2:2 file's colour is still interpolated across by libjpeg-turbo,
        at the reduced size: neither way matches it, and interpolating comes closer (0.35-0.45 levels
        against 0.40-0.48 on the same photos).
        """
        result = list(decoded)
        keys = {
            index: (int(image.shape[-2]), int(image.shape[-1]), jpeg.sampling)
            for index, (image, jpeg) in enumerate(zip(decoded, jpegs, strict=True))
            if jpeg.sampling in self.replicated and (jpeg.reduction == 1 or jpeg.sampling != SUBSAMPLING_420)
        }
        for (_, _, sampling), chosen in same_size_slices(keys, _CHROMA_BYTES_PER_PIXEL, _CHROMA_BYTES):
            fixed = interpolate_chroma(torch.stack([decoded[i] for i in chosen]), sampling)
            for index, image in zip(chosen, fixed, strict=True):
                result[index] = image
        return result

    @staticmethod
    def _reduced(
        decoded: dict[int, torch.Tensor | ImageDecodeError], reductions: dict[int, int]
    ) -> dict[int, torch.Tensor | ImageDecodeError]:
        """The full-size decodes (``reductions``' positions) box-reduced by their JPEG's
        :attr:`~EncodedJpeg.reduction`, images of one size together: each pixel the rounded mean of its
        block, as ``PIL.Image.reduce`` gives it, close to what draft mode's scaled IDCT decodes.

        Without it, a photo far larger than the input differed from the CPU path's pixels by up to 36 levels
        and changed 1.6 % of the labels of 501 originals of 2 MP and more, even in fp32 (docs/performance.md,
        "On a GPU"). Pillow's decodes are drafted already and not among ``reductions``.
        """
        reduced = dict(decoded)
        keys = {
            position: (int(image.shape[-2]), int(image.shape[-1]), reduction)
            for position, reduction in reductions.items()
            if reduction > 1 and isinstance(image := decoded[position], torch.Tensor)
        }
        for (_, _, reduction), chosen in same_size_slices(keys, _FLOAT_PIXEL_BYTES, _RESIZE_BYTES):
            pixels = torch.stack([decoded[position] for position in chosen]).float()  # type: ignore[misc]
            pooled = functional.avg_pool2d(pixels, reduction, ceil_mode=True).round_().to(torch.uint8)
            reduced.update(zip(chosen, pooled, strict=True))
        return reduced

    def _drain(self) -> None:
        """Wait for the work queued on the current CUDA stream before the device decoder writes.

        torchvision's CUDA ``decode_jpeg`` takes its outputs from the caching allocator on the caller's stream
        but writes them without waiting for that stream, so it can overwrite a block freed while kernels
        queued there still read it: wrong numbers or NaNs in unrelated tensors (pytorch/vision#9606, in
        134 of 200 tries on an H100 with torchvision 0.28; draining the stream first gave 0 of 200).
        Where the scanner and the handler decode, the stream is idle already (the last batch's answers were
        copied back), so this costs next to nothing there; it guards the one-by-one fallback, whose EXIF
        turns free a decode while the kernel reading it may still be queued, and any caller that overlaps.
        """
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def _resample(self, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """One pass of the resize, rounded to whole levels; on the CPU where the device's kernel cannot take it.

        CUDA's antialiased kernel keeps a block's filter weights in shared memory (48 KiB), so it refuses to
        shrink a side more than about 184 times (bilinear; half that bicubic): "Too much shared memory
        required". Within the pixel cap that is a page-long screenshot 41,000 px tall, or a banner 42,000 px
        wide (a JPEG too thin for draft mode to reduce). Such a pass runs on the CPU, the same arithmetic,
        instead of failing the whole batch.
        """
        options = {"size": size, "mode": self._mode, "antialias": self._antialias}
        try:
            resized = functional.interpolate(pixels, **options)  # type: ignore[arg-type]
        except RuntimeError as error:
            if pixels.device.type == "cpu" or "shared memory" not in str(error):
                raise
            resized = functional.interpolate(pixels.cpu(), **options).to(pixels.device)  # type: ignore[arg-type]
        return resized.round_().clamp_(0, 255)

    def to_inputs(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 (3, H, W) images on the device -> the model's (N, 3, S, S) float32 input, channels-last.

        Images of one size are resized together, in Pillow's two passes (the width, then the height), each
        rounded to whole levels as Pillow's 8-bit resize rounds them (a single 2-D pass differed from Pillow
        on ~17 % of the pixels of the tests' corpus, the two passes on ~3 %, by one level, two at most); then
        ``x * scale + offset`` as :func:`detector.preprocessing.image_to_array` computes it.
        """
        size = self.config.input_size
        out = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=self.device)
        keys = {index: (int(image.shape[-2]), int(image.shape[-1])) for index, image in enumerate(images)}
        for (height, width), chosen in same_size_slices(keys, _FLOAT_PIXEL_BYTES, _RESIZE_BYTES):
            pixels = torch.stack([images[i] for i in chosen]).float()
            if width != size:
                pixels = self._resample(pixels, (height, size))
            if height != size:
                pixels = self._resample(pixels, (size, size))
            out[chosen] = pixels
        out.mul_(self._scale).add_(self._offset)
        return out.contiguous(memory_format=torch.channels_last)
