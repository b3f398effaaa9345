"""What a model says about itself beyond its weights; torch-free, so ONNX consumers read it too.

The same record travels in the ``.pt`` checkpoint (``detector.checkpoint``) and, as JSON, in the
exported ONNX model's metadata properties (``export.onnx``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from detector.labels import CLASSES
from detector.preprocessing import PreprocessConfig


@dataclass
class CheckpointMetadata:
    """What a checkpoint says about itself, beyond its weights."""

    architecture: str
    dropout: float
    pretrained_weights: str | None
    preprocessing: dict[str, Any] = field(default_factory=lambda: PreprocessConfig().to_dict())
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    #: logits are divided by this before the softmax (fitted on the validation split)
    temperature: float = 1.0
    #: an image is called ``ai`` when its calibrated P(ai) >= threshold
    threshold: float = 0.5
    #: an image is called ``real`` when P(ai) <= real_threshold and ``unsure`` between the two (fitted on
    #: validation sources for a target share of AI images let through); None: no unsure band
    real_threshold: float | None = None
    training_config: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    test_metrics: dict[str, Any] | None = None
    version: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.preprocessing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointMetadata:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckpointMetadata:
        return cls.from_dict(json.loads(text))
