"""Image-level augmentations for training and perturbations for robustness evaluation.

Both act on the decoded PIL image, between the core's ``load_image`` and ``image_to_array``, so
they never bypass the shared preprocessing.  JPEG re-compression and down-scaling matter most
here: images found in the wild have been re-encoded and resized, which wipes out much of the
high-frequency evidence a detector can latch onto, so training must see such copies too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import partial

from PIL import Image, ImageFilter
from torchvision.transforms import v2

from detector.reencode import center_crop, center_crop_to, downscale, jpeg_recompress

PilTransform = Callable[[Image.Image], Image.Image]


def blur(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


class RandomJpeg:
    """With probability ``p``, re-compress at a quality drawn from ``quality_range``."""

    def __init__(self, p: float = 0.5, quality_range: tuple[int, int] = (50, 95)) -> None:
        self.p, self.quality_range = p, quality_range

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return jpeg_recompress(image, random.randint(*self.quality_range))


class RandomDownscale:
    """With probability ``p``, shrink by a factor drawn from ``factor_range``."""

    def __init__(self, p: float = 0.3, factor_range: tuple[float, float] = (0.4, 0.9)) -> None:
        self.p, self.factor_range = p, factor_range

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return downscale(image, random.uniform(*self.factor_range))


def square_crop(image: Image.Image) -> Image.Image:
    """The largest centred square: a photo cropped for a square feed, the shape most generators output."""
    side = min(image.size)
    return center_crop_to(image, side, side)


class RandomAspectCrop:
    """Crop to a random aspect ratio (width / height drawn log-uniformly from ``ratio_range``), at a random place.

    In realvsai-v1 86 % of AI images are square and 56 % of photos are (``python -m training.shortcuts``:
    aspect ratio alone predicts the label at 0.65 balanced accuracy on unseen sources).  The model
    squeezes every image to a square, so the shape shows as a stretch it could learn instead of
    generation traces; giving every training image a random shape, whatever its label, takes that
    shortcut away.
    """

    def __init__(self, ratio_range: tuple[float, float] = (0.75, 4 / 3)) -> None:
        self.log_range = (math.log(ratio_range[0]), math.log(ratio_range[1]))

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        ratio = math.exp(random.uniform(*self.log_range))
        crop_w, crop_h = (width, round(width / ratio)) if width / height < ratio else (round(height * ratio), height)
        crop_w, crop_h = max(1, min(crop_w, width)), max(1, min(crop_h, height))
        left, top = random.randint(0, width - crop_w), random.randint(0, height - crop_h)
        return image.crop((left, top, left + crop_w, top + crop_h))


class RandomBlur:
    """With probability ``p``, a Gaussian blur of a radius drawn from ``radius_range``."""

    def __init__(self, p: float = 0.3, radius_range: tuple[float, float] = (0.2, 2.0)) -> None:
        self.p, self.radius_range = p, radius_range

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return blur(image, random.uniform(*self.radius_range))


class RandomMask:
    """With probability ``p``, cover a random rectangle (2-20 % of the image) with its mean colour.

    The model then cannot rest on one region (a face, a watermark corner, a border) and must find
    evidence spread over the whole image.
    """

    def __init__(self, p: float = 0.3, area_range: tuple[float, float] = (0.02, 0.2)) -> None:
        self.p, self.area_range = p, area_range

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        width, height = image.size
        area = random.uniform(*self.area_range) * width * height
        aspect = random.uniform(0.5, 2.0)
        w = max(1, min(width, round((area * aspect) ** 0.5)))
        h = max(1, min(height, round((area / aspect) ** 0.5)))
        left, top = random.randint(0, width - w), random.randint(0, height - h)
        image = image.copy()
        mean = tuple(int(v) for v in image.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))
        image.paste(mean, (left, top, left + w, top + h))
        return image


def training_augmentation(policy: str = "standard", random_aspect: bool = False) -> PilTransform:
    """The training-time augmentation for ``policy`` (``standard`` or ``strong``), after a random-aspect crop."""
    if policy not in ("standard", "strong"):
        raise ValueError(f"augmentation policy must be 'standard' or 'strong', not {policy!r}")
    steps = strong_augmentation() if policy == "strong" else standard_augmentation()
    return v2.Compose([RandomAspectCrop(), steps]) if random_aspect else steps


def strong_augmentation() -> PilTransform:
    """Standard geometry and colour, then harsher damage for both classes: blur, grey, masks, JPEG 30-95."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.RandomRotation(degrees=15)], p=0.3),
            v2.RandomApply([v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03)], p=0.5),
            v2.RandomGrayscale(p=0.1),
            RandomMask(),
            RandomBlur(),
            RandomDownscale(p=0.5, factor_range=(0.3, 0.9)),
            RandomJpeg(p=0.7, quality_range=(30, 95)),
        ]
    )


def standard_augmentation() -> PilTransform:
    """The training-time augmentation: geometric and colour changes, then re-encoding damage."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.RandomRotation(degrees=10)], p=0.3),
            v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)], p=0.5),
            RandomDownscale(),
            RandomJpeg(),
        ]
    )


#: name -> transform, for ``evaluate --perturb``; "clean" is the untouched baseline.
#: (``partial`` rather than lambdas: DataLoader workers may need to pickle them.)
PERTURBATIONS: dict[str, PilTransform | None] = {
    "clean": None,
    "jpeg_q90": partial(jpeg_recompress, quality=90),
    "jpeg_q75": partial(jpeg_recompress, quality=75),
    "jpeg_q50": partial(jpeg_recompress, quality=50),
    "downscale_0.5x": partial(downscale, factor=0.5),
    "center_crop_0.5": partial(center_crop, fraction=0.5),
    "square_crop": square_crop,
    "gaussian_blur_r1.5": partial(blur, radius=1.5),
}
