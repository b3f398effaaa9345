"""Names that mark an image's origin: IPTC digital source types and the names of image generators."""

from __future__ import annotations

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"

#: IPTC digital source types meaning the pixels are (partly) made by a generative model
AI_SOURCE_TYPES = {
    "trainedAlgorithmicMedia": "AI-generated",
    "compositeWithTrainedAlgorithmicMedia": "contains AI-generated parts",
    "compositeSynthetic": "composite with synthetic parts",
}

#: IPTC digital source types meaning a camera or scanner captured the scene
CAPTURE_SOURCE_TYPES = {
    "digitalCapture": "captured by a digital camera",
    "computationalCapture": "captured by a camera with computational processing",
    "negativeFilm": "scanned from a film negative",
    "positiveFilm": "scanned from a slide",
    "print": "scanned from a print",
}

#: image generators, matched case-insensitively inside software and generator names
AI_GENERATORS = (
    "dall-e",
    "dall·e",
    "dalle",
    "firefly",
    "midjourney",
    "stable diffusion",
    "stablediffusion",
    "automatic1111",
    "comfyui",
    "novelai",
    "invokeai",
    "imagen",
    "gpt-4o",
    "chatgpt",
    "openai",
    "bing image creator",
    "ideogram",
    "leonardo.ai",
    "flux",
)


def source_type_name(value: object) -> str:
    """The IPTC code without its namespace (``trainedAlgorithmicMedia``), whichever way it was written."""
    text = str(value or "").strip()
    return text.rsplit("/", 1)[-1] if text.startswith("http") else text


def is_generator(name: object) -> bool:
    """True when ``name`` names a known image generator."""
    lowered = str(name or "").lower()
    return any(known in lowered for known in AI_GENERATORS)
