"""What happens to an image on its way around the web: re-compression, down-scaling, cropping.

Pillow only.  Training perturbs its test split with these (``training.augment.PERTURBATIONS``) and
the consistency check (:mod:`detector.consistency`) scores an upload again under them, so the
robustness figures in the model card and the check users run are the same transformations.
"""

from __future__ import annotations

import io

from PIL import Image


def jpeg_recompress(image: Image.Image, quality: int) -> Image.Image:
    """Encode as JPEG at ``quality`` and decode again."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def downscale(image: Image.Image, factor: float) -> Image.Image:
    """Shrink by ``factor`` (0 < factor <= 1), as a re-upload at lower resolution would."""
    width, height = image.size
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return image.resize(size, resample=Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, fraction: float) -> Image.Image:
    """Keep the central ``fraction`` of each side."""
    width, height = image.size
    return center_crop_to(image, max(1, round(width * fraction)), max(1, round(height * fraction)))


def center_crop_to(image: Image.Image, crop_w: int, crop_h: int) -> Image.Image:
    """The centred ``crop_w`` x ``crop_h`` region."""
    width, height = image.size
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))
