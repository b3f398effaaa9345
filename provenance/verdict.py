"""The combined verdict: strong evidence decides, otherwise the model does.

The rule, in full:

1. If some evidence is strong and all strong evidence points the same way, that way is the
   verdict (``source == "evidence"``).  Strong means: a C2PA manifest that validates and declares
   AI generation (or, from a trusted signer only, a camera capture), Stable Diffusion's decoded
   watermark, or generator settings (AUTOMATIC1111, ComfyUI, InvokeAI, NovelAI) in the file.
2. Otherwise the model's thresholded decision (``ai``, ``real`` or ``unsure``) is the verdict
   (``source == "model"``).  Weak evidence (camera EXIF, unsigned XMP, software names) is shown beside
   it but never overrides it: metadata is easy to forge and easy to strip.  Strong evidence pointing
   both ways cancels out and leaves the model to decide.

The model's own label, P(ai) and probabilities are kept unchanged beside the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from detector.calibration import Decision
from detector.labels import AI, REAL
from provenance.evidence import Evidence

VerdictSource = Literal["model", "evidence"]


@dataclass(frozen=True)
class Verdict:
    """The answer for one file once its evidence is weighed against the model's decision."""

    label: str
    source: VerdictSource
    #: one sentence saying why
    reason: str
    evidence: tuple[Evidence, ...]

    def to_dict(self) -> dict[str, Any]:
        """Fields to add to a JSON answer: ``verdict``, ``verdict_source``, ``verdict_reason``, ``evidence``."""
        return {
            "verdict": self.label,
            "verdict_source": self.source,
            "verdict_reason": self.reason,
            "evidence": [item.to_dict() for item in self.evidence],
        }

    def summary(self) -> str:
        """One line for reports: what decided, then each finding; empty when the file says nothing."""
        if not self.evidence:
            return ""
        head = f"evidence decides {self.label}" if self.source == "evidence" else "model decides"
        return " | ".join([head, *(item.summary() for item in self.evidence)])


def combine(evidence: Iterable[Evidence], decision: Decision | str) -> Verdict:
    """Weigh a file's evidence against the model's decision (a :class:`Decision` or just its label)."""
    items = tuple(evidence)
    model_label = decision if isinstance(decision, str) else decision.label
    strong = {item.points_to for item in items if item.strong and item.points_to in (AI, REAL)}
    if len(strong) == 1:
        label = strong.pop()
        first = next(item for item in items if item.strong and item.points_to == label)
        return Verdict(label, "evidence", f"Decided by the file's own evidence: {first.finding}", items)
    if len(strong) == 2:
        reason = "Strong evidence points both ways, so the model decides."
    elif items:
        reason = "No decisive evidence in the file (metadata alone never overrides the model), so the model decides."
    else:
        reason = "The file carries no provenance evidence, so the model decides."
    return Verdict(model_label, "model", reason, items)
