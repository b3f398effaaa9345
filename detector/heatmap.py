"""The class activation map as a picture: a transparent overlay, red where the evidence says ``ai``.

NumPy and Pillow only, so every surface (web app, scanner, TorchServe answers) draws the same map.
The map is in logit units (:class:`detector.model.ExplainedModel`); it is scaled by its largest
magnitude but never by less than :data:`MIN_SCALE`, so a map with no strong evidence anywhere stays
faint instead of being stretched into confident-looking colour.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

#: logit units that give full colour at the least (a position that alone would move P(ai) a lot)
MIN_SCALE = 2.0
#: the most opacity of the overlay, so the picture stays visible beneath it
MAX_ALPHA = 0.6
#: the longer side of a heatmap overlay sent as a PNG: the map is 7 x 7, so more only costs time (the
#: PNG's encoding grows with its area: ~0.3 ms at 32 px, ~1.5 ms at 64, ~90 ms at 224) and bytes; a
#: browser stretches it smoothly over a preview of any size (python -m loadtests.heatmap_cost measures it)
HEATMAP_SIDE = 32
#: the overlay's colours: red for ``ai``; a light cyan for ``real``, bright enough to show over dark
#: areas of a photo, where a pure blue (as dark as the shadows it lies on) could not be seen
AI_COLOUR = (255, 40, 40)
REAL_COLOUR = (0, 200, 255)


def overlay_size(size: tuple[int, int], side: int = HEATMAP_SIDE) -> tuple[int, int]:
    """``size`` (width, height) scaled so that its longer side is ``side``: a heatmap of the image's shape."""
    width, height = size
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def heatmap_rgba(cam: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """An RGBA overlay of ``size`` (width, height): red for evidence of ``ai``, cyan for ``real``."""
    cam = np.asarray(cam, dtype=np.float32)
    scaled = np.clip(cam / max(float(np.abs(cam).max()), MIN_SCALE), -1.0, 1.0)
    rgba = np.zeros((*cam.shape, 4), dtype=np.uint8)
    rgba[..., :3] = np.where((scaled > 0)[..., None], AI_COLOUR, REAL_COLOUR)
    rgba[..., 3] = np.round(255 * MAX_ALPHA * np.abs(scaled)).astype(np.uint8)
    return Image.fromarray(rgba, mode="RGBA").resize(size, Image.Resampling.BICUBIC)


def overlay(image: Image.Image, cam: np.ndarray) -> Image.Image:
    """``image`` with its heatmap drawn over it (RGB, the image's size)."""
    base = image.convert("RGBA")
    return Image.alpha_composite(base, heatmap_rgba(cam, base.size)).convert("RGB")


def heatmap_data_uri(cam: np.ndarray, size: tuple[int, int] = (HEATMAP_SIDE, HEATMAP_SIDE)) -> str:
    """The overlay alone as a PNG ``data:`` URI, to lay over a preview of any size in a page.

    ``size`` is best :func:`overlay_size` of the image (its shape, small): larger only costs encoding time.
    """
    buffer = io.BytesIO()
    heatmap_rgba(cam, size).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
