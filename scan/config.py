"""The scanner's settings: defaults, then ``DETECTOR_SCAN_<NAME>`` variables, then flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import CliPositionalArg

from detector import SHIPPED_MODEL
from detector.preprocessing import DEFAULT_MAX_PIXELS
from detector.runtimes import OnnxEngine
from detector.settings import ToolSettings, tool_config
from scan.reports import FORMATS


def _default_model() -> Path:
    """The exported ONNX model when ``make export`` has run (fastest), else the shipped checkpoint."""
    exported = Path("model_store/detector.onnx")
    return exported if exported.is_file() else SHIPPED_MODEL


class ScanSettings(ToolSettings):
    """Score every image in files, folders (recursively) or a list of paths, and write reports.

    Unreadable files are reported, never fatal. Re-running with the same --output skips the paths
    already in the report, so an interrupted scan resumes where it stopped.
    """

    model_config = tool_config("DETECTOR_SCAN_", "detector-scan")

    inputs: CliPositionalArg[list[Path]] = Field(
        default_factory=list, description="image files and folders (folders are searched recursively)"
    )
    paths_from: Path | None = Field(None, description="a text file with one path per line (- for stdin)")
    model: Path = Field(
        default_factory=_default_model,
        description=".onnx (run by --engine) or .pt checkpoint (default: model_store/detector.onnx after make export, "
        "else the model shipped in models/default)",
    )
    output: Path = Field(Path("scan-report"), description="report prefix: writes PREFIX.csv, PREFIX.jsonl")
    format: list[str] = Field(["csv", "jsonl"], description="report formats, any of csv, jsonl")
    html: bool = Field(False, description="also write PREFIX.html, thumbnails sorted by P(ai), for review")
    threshold: float | None = Field(None, ge=0, le=1, description="P(ai) from which to say ai (default: the model's)")
    real_threshold: float | None = Field(
        None, ge=0, le=1, description="P(ai) at or below which to say real, unsure between (default: the model's)"
    )
    explain: Path | None = Field(
        None,
        description="write a heatmap overlay PNG per image into this folder (at most 512 px a side; red: evidence "
        "of AI generation, cyan: of a real photo), linked from the HTML report",
    )
    consistency: bool = Field(
        False,
        description="also score each image re-saved as JPEG q75, halved and centre-cropped; a verdict one of them "
        "flips becomes unsure, with the reason (about 4x the model's work)",
    )
    workers: int = Field(2, ge=1, description="threads decoding and resizing images (on a GPU: reading them)")
    batch_size: int = Field(16, ge=1, description="images per forward pass (default 16; 256 with --device cuda)")
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|cuda(:[0-9]+)?)$",
        description="cpu, or cuda[:N]: JPEGs decoded with nvJPEG and the model in large fp16 batches on the GPU (a .pt "
        "checkpoint: the shipped model unless --model names one; an .onnx needs onnxruntime-gpu)",
    )
    precision: Literal["fp16", "bf16", "fp32"] = Field("fp16", description="on a GPU: fp16 or bf16 autocast, or fp32")
    engine: OnnxEngine = Field(
        "auto",
        description="what runs an .onnx on the CPU: openvino (fp32: ONNX Runtime's answers, faster), onnxruntime, or "
        "auto: openvino where installed",
    )
    threads: int | None = Field(None, ge=1, description="inference threads (default: all cores)")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="larger images are reported, not decoded")
    resume: bool = Field(True, description="skip paths already in the report (--no-resume starts it afresh)")
    evidence: bool = Field(
        True, description="read provenance evidence (C2PA, SD watermark, generator settings, EXIF) into the report"
    )

    @model_validator(mode="after")
    def _gpu_defaults(self) -> ScanSettings:
        """On a GPU: batches of 256 and the checkpoint (the exported .onnx runs on the CPU), unless given."""
        if self.device != "cpu":
            if "batch_size" not in self.model_fields_set:
                self.batch_size = 256
            if "model" not in self.model_fields_set and self.model.suffix == ".onnx":
                self.model = SHIPPED_MODEL
        return self

    @field_validator("format")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        formats = [part for item in value for part in item.split(",") if part]
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown or not formats:
            raise ValueError(f"--format takes {', '.join(FORMATS)}; got {unknown or 'nothing'}")
        return formats
