"""Provenance evidence beside the model's verdict: what a file's own bytes say about where it came from.

``inspect(data)`` reads C2PA manifests (Content Credentials, validated with ``c2pa-python``),
Stable Diffusion's invisible watermark (``invisible-watermark``), generator settings in text
chunks (AUTOMATIC1111, ComfyUI, ...), EXIF and XMP, and returns a list of :class:`Evidence`;
``inspect(data, settings, decoded)`` reads the pixels of a decode the caller already made (the web
app's model's) where it can, instead of decoding the file again (``reads_pixels`` says where).
``combine(evidence, decision)`` applies the documented rule (:mod:`provenance.verdict`): strong
evidence decides, otherwise the model does.  Built on the core (``detector``), which never imports it.

    evidence = provenance.inspect(data)
    verdict = provenance.combine(evidence, decision)
    answer.update(verdict.to_dict())   # verdict, verdict_source, verdict_reason, evidence
"""

from provenance.config import ProvenanceSettings
from provenance.evidence import NEUTRAL, Evidence
from provenance.inspection import inspect, reads_pixels
from provenance.verdict import Verdict, combine

__all__ = ["NEUTRAL", "Evidence", "ProvenanceSettings", "Verdict", "combine", "inspect", "reads_pixels"]
