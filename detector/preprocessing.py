"""The one preprocessing implementation: bytes or a file in, a normalised CHW float32 array out.

Training, export, the TorchServe handler and the web app all call this module, so the model sees
the same pixels at training and at serving time (train/serve skew is a bug).  It uses Pillow and
NumPy only, never torch, so torch-free serving paths can import it.

The pipeline is split in two steps because training augments the decoded image in between:

1. :func:`load_image` -- decode (with JPEG draft mode), refuse oversized images before decoding
   their pixels, apply the EXIF orientation, convert to RGB. :func:`decode_image` is the same decode,
   saying at what scale the draft mode decoded, so others can reuse the pixels instead of decoding again
   (for that, 4:2:0 JPEGs up to :data:`HALF_SCALE_MAX_PIXELS` are decoded at half scale and box-reduced
   the rest of the way for the model).
2. :func:`image_to_array` -- resize to ``input_size`` x ``input_size`` and normalise with the
   mean/std recorded in the checkpoint.

:func:`preprocess` runs both; :func:`preprocess_decoded` is the same, also handing back the decode it
resized (the scanner and TorchServe's handler pass it on to the provenance checks that read those pixels).
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Default cap on width x height, checked from the header before any pixel is decoded.
#: 64 megapixels admits every camera photo in common use (a 61 MP full-frame sensor) and
#: refuses decompression bombs whose tiny files declare enormous dimensions.
DEFAULT_MAX_PIXELS = 64_000_000

#: 4:2:0 JPEGs of up to this many pixels are decoded at half scale at most in draft mode, never at a
#: quarter or an eighth, and box-reduced by the rest of the way for the model (what draft mode's DCT
#: scaling does, near enough). The provenance watermark check reads a 4:2:0 JPEG at exactly half scale,
#: and only files within its pixel cap (2048 x 2048 by default), so the model's decode serves the check
#: too instead of the file's entropy decoding being paid twice (docs/performance.md). The model's
#: answers barely move: on 1,139 such originals P(ai) moved by 0.005 on average and 0.035 at most, and
#: the ROC-AUC stayed at 0.831 (``python -m loadtests.half_scale``). Larger JPEGs are reduced as before.
HALF_SCALE_MAX_PIXELS = 2048 * 2048

# Pillow's own decompression-bomb guard, set explicitly rather than left at its default: a backstop
# for any code that opens images without going through load_image (which checks max_pixels from
# the header first). Pillow warns above this and refuses above twice this, from inside Image.open,
# so load_image raises it to any larger max_pixels it is asked for (_guard_at_least): otherwise a
# limit set above 2 x 64 MP could never be reached, and the refusal would name Pillow's number.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
_GUARD_LOCK = threading.Lock()

#: modes holding more than 8 bits per sample: 16-bit PNG/TIFF ("I;16*", "I") and float TIFF ("F")
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
#: Pillow's ``JpegImagePlugin.get_sampling`` for 4:2:0 chroma (halved both ways); 0 is 4:4:4
SUBSAMPLING_420 = 2
#: the same for 4:2:2 chroma (halved across)
SUBSAMPLING_422 = 1

#: file name suffixes of the formats the detector reads when it scans folders
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def list_images(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively, by suffix), sorted; none when it is not a folder.

    The one definition of "the images in a folder" for training data, calibration, parity checks,
    the scanner and the load tests.
    """
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


_RESAMPLERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

ImageSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO


class ImageDecodeError(ValueError):
    """The input cannot be turned into a model input.

    ``reason`` is a stable machine-readable code (``empty``, ``not_an_image``, ``truncated``,
    ``too_large``) so that servers can map it to a status code; ``str(error)`` is a sentence
    fit to show a user.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def status(self) -> int:
        """The HTTP status a server answers this refusal with (:data:`STATUS_FOR_REASON`)."""
        return STATUS_FOR_REASON.get(self.reason, 422)


#: the HTTP status of each refusal reason, the one map the web app, TorchServe's handler and the
#: baseline server all answer with: too large is 413, not an image 415, empty or cut short 422
STATUS_FOR_REASON: dict[str, int] = {"too_large": 413, "not_an_image": 415, "empty": 422, "truncated": 422}


@dataclass(frozen=True)
class PreprocessConfig:
    """The parameters of :func:`image_to_array`, stored in every checkpoint and read back from it."""

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resample: str = "bilinear"
    _scale: np.ndarray = field(init=False, repr=False, compare=False)
    _offset: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.resample not in _RESAMPLERS:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLERS)}, not {self.resample!r}")
        if self.input_size < 8:
            raise ValueError(f"input_size must be at least 8, not {self.input_size}")
        # (x / 255 - mean) / std == x * scale + offset: one fused multiply-add per pixel.
        std = np.asarray(self.std, dtype=np.float32)
        object.__setattr__(self, "_scale", (1.0 / (255.0 * std)).astype(np.float32))
        object.__setattr__(self, "_offset", (-np.asarray(self.mean, dtype=np.float32) / std).astype(np.float32))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so checkpoints stay loadable with ``weights_only=True``."""
        data = asdict(self)
        data.pop("_scale", None)
        data.pop("_offset", None)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return cls(
            input_size=int(data["input_size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            resample=str(data.get("resample", "bilinear")),
        )


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageDecodeError("empty", "the file is empty")
        return Image.open(io.BytesIO(bytes(source)))
    if isinstance(source, (str, os.PathLike)):
        if Path(source).stat().st_size == 0:
            raise ImageDecodeError("empty", "the file is empty")
        return Image.open(source)
    return Image.open(source)


def _guard_at_least(max_pixels: int) -> None:
    """Raise Pillow's global bomb guard to ``max_pixels`` when it is lower; never lower it.

    The guard is process-wide, and servers decode in several threads: the lock makes the raise
    monotonic, so a thread asking for a smaller limit cannot undo a larger one another asked for.
    """
    guard = Image.MAX_IMAGE_PIXELS
    if guard is not None and guard < max_pixels:
        with _GUARD_LOCK:
            if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
                Image.MAX_IMAGE_PIXELS = max_pixels


@contextmanager
def _decoding(max_pixels: int) -> Iterator[None]:
    """Pillow's refusals and failures inside the block, as :class:`ImageDecodeError` with a stable reason."""
    _guard_at_least(max_pixels)
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check (_checked) replaces Pillow's global bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not_an_image", "the file is not an image in a supported format") from None
    except Image.DecompressionBombError:
        # Pillow refused from the header inside Image.open, above twice its guard (>= max_pixels): the
        # caller's limit is the one the image broke, and the one to name
        raise ImageDecodeError("too_large", f"the image has more pixels than the limit of {max_pixels:,}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError/EOFError.
        raise ImageDecodeError("truncated", f"the image data is truncated or corrupt ({error})") from None


def _checked(image: Image.Image, max_pixels: int) -> Image.Image:
    """The opened image, refused when its header declares more than ``max_pixels`` or no pixels at all."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_large",
            f"the image is {width}x{height} pixels, more than the limit of {max_pixels:,}",
        )
    if width < 1 or height < 1:
        raise ImageDecodeError("not_an_image", "the image has no pixels")
    return image


def open_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image and check it from its header alone: no pixel is decoded yet.

    The first half of :func:`load_image`, with the same refusals (``empty``, ``not_an_image``,
    ``too_large``), for decoders other than Pillow's (:mod:`detector.gpu_preprocessing`) that must
    apply the same limits before they decode.
    """
    with _decoding(max_pixels):
        return _checked(_open(source), max_pixels)


def load_image(
    source: ImageSource,
    *,
    draft_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode an image, upright and in RGB.

    ``draft_size`` lets JPEG decoding skip detail that the later resize would throw away (Pillow's
    draft mode decodes at 1/2, 1/4 or 1/8 scale, never below ``draft_size`` on either side).
    ``max_pixels`` is checked against the header, before the pixels are decoded, so a
    decompression bomb costs nothing.
    """
    return decode_image(source, draft_size=draft_size, max_pixels=max_pixels).model_image


@dataclass(frozen=True)
class DecodedImage:
    """An image as :func:`decode_image` decoded it: the image :func:`load_image` returns, and at what scale.

    Whoever else reads the same file's pixels at that scale (the web app's provenance watermark check)
    takes them from here instead of decoding the file once more.
    """

    #: upright and in RGB, at the scale draft mode decoded it
    image: Image.Image
    #: JPEG draft mode's reduction: 1 when every pixel was decoded, else 2, 4 or 8 (each side of the
    #: stored image divided by it, rounded up)
    scale: int = 1
    #: how much further draft mode would have reduced the image for the model had
    #: :data:`HALF_SCALE_MAX_PIXELS` not held it at half scale (1: no further)
    reduction: int = 1

    @property
    def model_image(self) -> Image.Image:
        """What the model resizes, and :func:`load_image` returns: the decode, box-reduced where it was held."""
        return self.image.reduce(self.reduction) if self.reduction > 1 else self.image


def decode_image(
    source: ImageSource,
    *,
    draft_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    half_scale_max_pixels: int = HALF_SCALE_MAX_PIXELS,
) -> DecodedImage:
    """:func:`load_image`, saying at what scale the JPEG draft mode decoded the image.

    Draft mode takes the largest reduction that keeps both sides at least ``draft_size``; a 4:2:0 JPEG of
    up to ``half_scale_max_pixels`` (:data:`HALF_SCALE_MAX_PIXELS`; 0: none) is decoded at half scale
    instead, with the rest of the reduction left to :attr:`DecodedImage.model_image`.
    """
    with _decoding(max_pixels):
        image = _checked(_open(source), max_pixels)
        scale, reduction = 1, 1
        if draft_size is not None:
            scale, reduction = draft_for_model(image, draft_size, half_scale_max_pixels)
        image.load()
        image = ImageOps.exif_transpose(image) or image
        if image.mode in _WIDE_MODES:
            image = _to_8_bit(image)
        return DecodedImage(image if image.mode == "RGB" else image.convert("RGB"), scale, reduction)


def draft_for_model(
    image: Image.Image, draft_size: int, half_scale_max_pixels: int = HALF_SCALE_MAX_PIXELS
) -> tuple[int, int]:
    """Set an opened, not yet loaded JPEG's draft mode as the model's decode does: (scale, reduction).

    ``scale`` is draft mode's reduction (1, 2, 4 or 8), ``reduction`` the box reduction left for
    :attr:`DecodedImage.model_image` where :data:`HALF_SCALE_MAX_PIXELS` holds the decode at half scale.
    Other formats, and a JPEG that cannot draft, give (1, 1). Only the header is read, so a decoder that
    does not draft (nvJPEG, :mod:`detector.gpu_preprocessing`) learns here how far the CPU path reduces
    the file and box-reduces its full-size decode by ``scale * reduction`` to give close pixels.
    """
    if image.format != "JPEG":
        return 1, 1
    stored_width = image.size[0]
    held = half_scale_reduction(image, draft_size, half_scale_max_pixels)
    drafted = draft_half_scale(image) if held > 1 else image.draft("RGB", (draft_size, draft_size))
    if drafted is None:
        return 1, 1
    scale = round(stored_width / drafted[1][2])  # drafted: (mode, (0, 0, stored width / scale, ...))
    return scale, held if scale == 2 else 1


def draft_half_scale(image: Image.Image) -> tuple[str, tuple[int, int, float, float]] | None:
    """Ask an opened JPEG's draft mode for half scale (Pillow's answer, None where it cannot draft).

    Draft mode takes the largest reduction that keeps both sides at least the requested size, so the
    request is half of each side rounded down: rounded up, an odd side could only be met at full scale.
    """
    width, height = image.size
    return image.draft("RGB", (max(1, width // 2), max(1, height // 2)))


def half_scale_reduction(
    image: Image.Image, draft_size: int, half_scale_max_pixels: int = HALF_SCALE_MAX_PIXELS
) -> int:
    """From an opened JPEG's header: how much further than half scale draft mode would reduce it for
    ``draft_size`` where :data:`HALF_SCALE_MAX_PIXELS` holds it at half scale (2 or 4), else 1."""
    width, height = image.size
    if width * height > half_scale_max_pixels or JpegImagePlugin.get_sampling(image) != SUBSAMPLING_420:
        return 1
    fits = min(width // draft_size, height // draft_size)  # draft mode's rule: the largest of 8, 4, 2, 1
    full = next((scale for scale in (8, 4, 2) if fits >= scale), 1)
    return full // 2 if full > 2 else 1


def _to_8_bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit or float samples to 0..255; Pillow's own conversion would clip them to white."""
    samples = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = 1.0 if samples.max(initial=0.0) <= 1.0 else 255.0
    else:
        peak = 65535.0 if samples.max(initial=0.0) > 255 else 255.0
    return Image.fromarray(np.clip(samples * (255.0 / peak), 0, 255).round().astype(np.uint8), "L")


def image_to_array(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """Resize an RGB image to the model's input size and normalise it: float32, shape (3, H, W)."""
    size = (config.input_size, config.input_size)
    if image.size != size:
        image = image.resize(size, resample=_RESAMPLERS[config.resample])
    # channels first, then the multiply-add in place with the per-channel constants on the outer axis: the
    # same floats as (HWC * scale + offset).transpose, about 1 ms less per image (an innermost axis of 3 is
    # NumPy's slowest broadcast; make microbench's preprocessing table, docs/performance.md)
    normalised = np.asarray(image).transpose(2, 0, 1).astype(np.float32, order="C")
    normalised *= config._scale[:, None, None]
    normalised += config._offset[:, None, None]
    return normalised


def preprocess(
    source: ImageSource,
    config: PreprocessConfig,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Bytes, a path or a file object in; the model's input for one image out."""
    return preprocess_decoded(source, config, max_pixels=max_pixels)[0]


def preprocess_decoded(
    source: ImageSource,
    config: PreprocessConfig,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, DecodedImage]:
    """:func:`preprocess`, also returning the decode it resized (:func:`decode_image`), for whoever reads
    the same pixels next (the provenance checks) instead of decoding the file again."""
    decoded = decode_image(source, draft_size=config.input_size, max_pixels=max_pixels)
    return image_to_array(decoded.model_image, config), decoded
