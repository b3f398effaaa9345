"""The consistency check: score an image again as the web would change it, and doubt a verdict that flips.

A verdict that turns from ``ai`` to ``real`` when the same picture is re-saved at JPEG quality 75,
halved or cropped is not one to act on: the check turns it into ``unsure`` and says which change
flipped it. Off by default (it costs one forward pass per variant, :data:`VARIANTS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np
from PIL import Image

from detector.calibration import UNSURE, Decision
from detector.preprocessing import DEFAULT_MAX_PIXELS, ImageSource, PreprocessConfig, image_to_array, load_image
from detector.reencode import center_crop, downscale, jpeg_recompress
from detector.runtimes.base import Detector

#: the variants each image is scored under, by the name given in the reason
VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "JPEG quality 75": partial(jpeg_recompress, quality=75),
    "0.5x down-scale": partial(downscale, factor=0.5),
    "centre crop (80 %)": partial(center_crop, fraction=0.8),
}


def variant_arrays(detector: Detector, source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The model inputs of each variant of one image, in :data:`VARIANTS` order (decoded at full size)."""
    return variants_of(load_image(source, max_pixels=max_pixels), detector.preprocess_config)


def variants_of(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """The model inputs of each variant of a decoded image, in :data:`VARIANTS` order."""
    return np.stack([image_to_array(change(image), config) for change in VARIANTS.values()])


def reconcile(decision: Decision, variants: list[Decision]) -> Decision:
    """``decision`` as it stands when every variant agrees; ``unsure``, saying why, when one does not."""
    flipped = [
        f"{name}: P(AI) {100 * other.p_ai:.0f} % ({other.label})"
        for name, other in zip(VARIANTS, variants, strict=True)
        if other.label != decision.label
    ]
    if not flipped or decision.label == UNSURE:
        return decision
    reason = f"the verdict was {decision.label} but changes when the image is re-saved or resized: " + "; ".join(
        flipped
    )
    return replace(decision, label=UNSURE, reason=reason)


def check_consistency(
    detector: Detector, source: ImageSource, decision: Decision, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Decision:
    """:func:`reconcile` ``decision`` (the image's own) with the image's variants scored by ``detector``."""
    return reconcile(decision, detector.classify(variant_arrays(detector, source, max_pixels=max_pixels)))
