"""Provenance evidence: files made with the real tools' formats, read back by ``provenance.inspect``.

Each kind of file must give the expected evidence and verdict; no file, however malformed, may
make ``inspect`` raise (the hostile corpus and mutated copies of every evidence file).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import provenance_files as files
import pytest
from corpus import hostile_corpus
from fastapi.testclient import TestClient
from helpers import make_image, run_module
from PIL import Image, ImageFile

from detector.calibration import Decision
from detector.preprocessing import decode_image
from provenance import Evidence, ProvenanceSettings, combine, inspect, watermark
from provenance.evidence import clean_text
from provenance.watermark import (
    HALF_SCALE_MAX_ERRORS,
    MESSAGES,
    SD1,
    SD1_BITS,
    SD_BITS,
    SDXL,
    bit_errors,
    decode_bits,
    half_scale_bit_errors,
)
from serving.app import create_app
from serving.config import ServeSettings

MODEL_SAYS_REAL = Decision("real", 0.1, {"ai": 0.1, "real": 0.9})
MODEL_SAYS_AI = Decision("ai", 0.8, {"ai": 0.8, "real": 0.2})
MODEL_UNSURE = Decision("unsure", 0.4, {"ai": 0.4, "real": 0.6})


@pytest.fixture(scope="module")
def certificates() -> files.TestCertificates:
    return files.make_certificates()


@pytest.fixture(scope="module")
def signed(certificates: files.TestCertificates) -> bytes:
    return files.c2pa_signed(certificates)


@pytest.fixture(scope="module")
def trusting(certificates: files.TestCertificates, tmp_path_factory: pytest.TempPathFactory) -> ProvenanceSettings:
    anchors = tmp_path_factory.mktemp("trust") / "anchors.pem"
    anchors.write_bytes(certificates.ca_pem)
    return ProvenanceSettings(trust_anchors=anchors)


def _only(evidence: list[Evidence], kind: str) -> Evidence:
    matching = [item for item in evidence if item.kind == kind]
    assert len(matching) == 1, evidence
    return matching[0]


# ---- generator settings ----------------------------------------------------------------------------


def test_automatic1111_png_decides_ai() -> None:
    evidence = inspect(files.a1111_png())
    item = _only(evidence, "generator_parameters")
    assert (item.points_to, item.strong) == ("ai", True)
    assert "AUTOMATIC1111" in item.finding and "DPM++ 2M Karras" in item.finding and "astronaut" in item.finding
    verdict = combine(evidence, MODEL_SAYS_REAL)
    assert (verdict.label, verdict.source) == ("ai", "evidence")


def test_automatic1111_jpeg_user_comment_decides_ai() -> None:
    item = _only(inspect(files.a1111_jpeg()), "generator_parameters")
    assert item.strong and "EXIF UserComment" in item.finding and "v1-5-pruned-emaonly" in item.finding


def test_comfyui_workflow_png_decides_ai() -> None:
    evidence = inspect(files.comfyui_png())
    item = _only(evidence, "generator_parameters")
    assert (item.points_to, item.strong) == ("ai", True)
    assert "ComfyUI" in item.finding and "5 nodes" in item.finding and "KSampler" in item.finding
    assert combine(evidence, MODEL_SAYS_REAL).label == "ai"


def test_text_that_only_resembles_generator_settings_does_not_count() -> None:
    lookalikes = files.png_with_text(
        {"parameters": "exposure +1, contrast 10", "prompt": "{not json", "workflow": json.dumps({"nodes": 3})}
    )
    assert inspect(lookalikes) == []


# ---- Stable Diffusion watermark --------------------------------------------------------------------


def test_sd_watermark_survives_jpeg_q90() -> None:
    evidence = inspect(files.watermarked_jpeg(quality=90))
    item = _only(evidence, "sd_watermark")
    assert (item.points_to, item.strong) == ("ai", True)
    assert combine(evidence, MODEL_SAYS_REAL).source == "evidence"


@pytest.mark.parametrize("size", [(512, 512), (256, 256)])
def test_sd1_watermark_of_compvis_txt2img_decides_ai(size: tuple[int, int]) -> None:
    """SD 1.x outputs carry ``StableDiffusionV1`` (136 bits), not SDXL's 48 bits; 256x256 is the smallest
    size the library marks, with the fewest blocks per bit."""
    evidence = inspect(files.txt2img_png(size))
    item = _only(evidence, "sd_watermark")
    assert (item.points_to, item.strong) == ("ai", True)
    assert "SD 1.x" in item.finding and "of 136 bits match" in item.finding, item.finding
    assert combine(evidence, MODEL_SAYS_REAL).source == "evidence"


def test_the_two_messages_are_told_apart() -> None:
    """Each fixture decodes to its own message and is far from the other one."""
    for data, mine, other in ((files.txt2img_png(), SD1, SDXL), (files.watermarked_jpeg(), SDXL, SD1)):
        bgr = np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1])
        errors = bit_errors(bgr)
        assert errors[mine] <= mine.max_errors and errors[other] > other.max_errors, errors


def test_random_images_are_never_flagged() -> None:
    """Noise decodes to fair coin flips, the worst case the tolerances are chosen against: none may pass.

    The decoded distances must also look like coin flips (mean about half the bits), or the
    false-positive rates the tolerances are quoted with would not apply.
    """
    rng = np.random.default_rng(2026)
    distances: dict[object, list[int]] = {message: [] for message in MESSAGES}
    for index in range(120):
        side = (256, 320, 384, 512)[index % 4]
        noise = Image.fromarray(rng.integers(0, 256, (side, side + index % 7, 3), dtype=np.uint8))
        data = files.encode(noise, "PNG")
        assert [e for e in inspect(data) if e.kind == "sd_watermark"] == []
        bgr = np.ascontiguousarray(np.asarray(noise)[:, :, ::-1])
        for message, errors in bit_errors(bgr).items():
            distances[message].append(errors)
    for message, found in distances.items():
        assert min(found) > message.max_errors
        assert abs(np.mean(found) - len(message.bits) / 2) < 0.1 * len(message.bits), (message.name, np.mean(found))
        assert message.false_positive_rate < 1e-9


def test_sd_watermark_is_not_seen_where_there_is_none() -> None:
    assert inspect(files.stripped_jpeg()) == []
    plain = files.encode(make_image("ai", 42, (512, 512)), "JPEG", quality=90, subsampling=0)
    assert inspect(plain) == []  # the same picture as the marked one, unmarked


def test_sd_watermark_does_not_survive_chroma_subsampling() -> None:
    """The documented limit: the mark lives in the U channel, which 4:2:0 JPEGs store at half resolution."""
    assert not [e for e in inspect(files.watermarked_jpeg(subsampling=2)) if e.kind == "sd_watermark"]


def test_sd_watermark_check_is_skipped_above_its_pixel_cap() -> None:
    settings = ProvenanceSettings(watermark_max_pixels=300 * 300)
    item = _only(inspect(files.watermarked_jpeg(), settings), "sd_watermark")
    assert (item.points_to, item.strong) == ("neutral", False) and "not checked" in item.finding


def _txt2img_jpeg(quality: int, subsampling: int = 2) -> bytes:
    """A CompVis txt2img output (SD 1.x mark, 512x512) re-saved as a JPEG, 4:2:0 unless told."""
    image = Image.open(io.BytesIO(files.txt2img_png())).convert("RGB")
    return files.encode(image, "JPEG", quality=quality, subsampling=subsampling)


@pytest.mark.parametrize("quality", [100, 97])
def test_sd_watermark_is_found_in_4_2_0_jpegs_of_the_highest_qualities(quality: int) -> None:
    """4:2:0 does not always erase the mark: at the highest qualities it survives (docs/provenance.md), so
    the half-scale read of such JPEGs must send them on to the full decode."""
    item = _only(inspect(_txt2img_jpeg(quality)), "sd_watermark")
    assert (item.points_to, item.strong) == ("ai", True)
    errors = half_scale_bit_errors(Image.open(io.BytesIO(_txt2img_jpeg(quality))))
    assert errors[SD1] <= HALF_SCALE_MAX_ERRORS[SD1]


def test_full_size_decode_only_where_a_mark_can_be(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []
    full_decode = watermark.load_image

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        decoded.append(1)
        return full_decode(*args, **kwargs)

    monkeypatch.setattr(watermark, "load_image", counting)
    cap = ProvenanceSettings().watermark_max_pixels
    no_mark_possible = {
        "4:2:0 JPEG q85 of a marked image": _txt2img_jpeg(85),
        "grayscale": files.encode(files.watermarked().convert("L"), "PNG"),
        "under 256x256": files.encode(make_image("ai", 1, (255, 255)), "PNG"),
        "4:2:0 camera-like photo": files.stripped_jpeg(),
    }
    for name, data in no_mark_possible.items():
        assert watermark.check(data, cap) == [], name
        assert decoded == [], name
    # where a mark can be, the full decode decides
    for data in (files.txt2img_png(), files.watermarked_jpeg(quality=90), _txt2img_jpeg(100)):
        decoded.clear()
        assert [e.strong for e in watermark.check(data, cap)] == [True]
        assert decoded == [1]


@pytest.mark.parametrize("size", [(389, 517), (517, 389), (640, 481)])
def test_half_scale_read_of_odd_sizes_is_a_half_scale_read(size: tuple[int, int]) -> None:
    """Odd-sized 4:2:0 JPEGs are read at half scale too: asking Pillow's draft for half of each side rounded up
    decoded them at full size, read as if at half scale, so every mark that survived in them was ruled out."""
    image = Image.open(io.BytesIO(files.txt2img_png(size, seed=1))).convert("RGB")
    data = files.encode(image, "JPEG", quality=100, subsampling=2)
    errors = half_scale_bit_errors(Image.open(io.BytesIO(data)))
    assert errors[SD1] <= HALF_SCALE_MAX_ERRORS[SD1], errors
    item = _only(watermark.check(data, ProvenanceSettings().watermark_max_pixels), "sd_watermark")
    assert (item.points_to, item.strong) == ("ai", True)


def _model_decode(data: bytes):  # noqa: ANN202 - DecodedImage
    """The file as the web app's model decodes it (draft mode down to its 224 px input)."""
    return decode_image(data, draft_size=224)


def test_the_models_decode_is_read_instead_of_decoding_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the model decoded a file at the scale a watermark step reads (every pixel: PNGs and small JPEGs;
    half scale: 4:2:0 JPEGs of 448 px and more on the short side, up to 2048 x 2048), the check reads those pixels
    and decodes nothing, with the same evidence; at another scale it decodes the file itself, as before."""
    cap = ProvenanceSettings().watermark_max_pixels
    loads: list[int] = []
    real_load = watermark.load_image
    monkeypatch.setattr(watermark, "load_image", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    decodes: list[int] = []
    real_decode = ImageFile.ImageFile.load

    def counting_decode(self):  # noqa: ANN001, ANN202
        if self.tile:  # pixels still to decode
            decodes.append(1)
        return real_decode(self)

    photo = make_image("real", 3, (640, 480))
    cases = {
        "marked PNG (model: every pixel)": (files.txt2img_png(), 1, True),
        "marked 4:2:0 JPEG q100 (model: half scale)": (_txt2img_jpeg(100), 2, True),
        "4:2:0 photo, 640x480 (model: half scale)": (files.encode(photo, "JPEG", quality=90), 2, False),
        "4:2:0 photo, odd size (model: half scale)": (files.encode(photo.crop((0, 0, 639, 479)), "JPEG"), 2, False),
    }
    for name, (data, scale, marked) in cases.items():
        decoded = _model_decode(data)
        assert decoded.scale == scale, name
        alone = watermark.check(data, cap)
        loads.clear()
        monkeypatch.setattr(ImageFile.ImageFile, "load", counting_decode)
        try:
            decodes.clear()
            shared = watermark.check(data, cap, decoded)
        finally:
            monkeypatch.setattr(ImageFile.ImageFile, "load", real_decode)
        assert shared == alone and bool(shared) == marked, name
        # a marked 4:2:0 JPEG still gets its full decode (the model's is at half scale): the decisive read
        assert loads == ([1] if marked and scale == 2 else []), name
        assert decodes == ([1] if marked and scale == 2 else []), name
    # the half-scale read from the model's pixels is the half-scale read
    data = cases["4:2:0 photo, 640x480 (model: half scale)"][0]
    assert half_scale_bit_errors(Image.open(io.BytesIO(data)), _model_decode(data).image) == half_scale_bit_errors(
        Image.open(io.BytesIO(data))
    )
    # at a scale no step reads (a quarter: JPEGs over 2048 x 2048, here within a raised cap), nothing is kept
    # for the check, which decodes as before
    large = files.encode(make_image("real", 4, (3000, 1500)), "JPEG", quality=90)
    decoded = _model_decode(large)
    raised = 3000 * 1500
    assert decoded.scale == 4 and not watermark.reads(decoded, raised)
    assert watermark.check(large, raised, decoded) == watermark.check(large, raised) == []


def test_only_a_decode_the_checks_read_is_kept_for_them() -> None:
    """The web app keeps the model's decode of a file until the evidence is read only where a check reads it."""
    from provenance import reads_pixels

    png = _model_decode(files.txt2img_png())
    assert reads_pixels(png, ProvenanceSettings())
    for settings in (
        ProvenanceSettings(enabled=False),
        ProvenanceSettings(watermark=False),
        ProvenanceSettings(watermark_max_pixels=500 * 500),
    ):
        assert not reads_pixels(png, settings), settings
    photo = make_image("real", 4, (4000, 3000))  # decoded at an eighth, over the pixel cap anyway
    assert not reads_pixels(_model_decode(files.encode(photo, "JPEG")), ProvenanceSettings())


def test_inspect_with_the_models_decode_gives_the_same_evidence() -> None:
    for data in (
        files.txt2img_png(),
        files.watermarked_jpeg(quality=90),
        _txt2img_jpeg(100),
        _txt2img_jpeg(85),
        files.a1111_png(),
        files.camera_jpeg(),
        files.stripped_jpeg(),
    ):
        assert inspect(data, decoded=_model_decode(data)) == inspect(data)


def test_half_scale_read_of_unmarked_images_is_a_coin_flip() -> None:
    """Noise JPEGs read about half their bits wrong at half scale, so nearly all skip the full decode
    (within the limits: ~6 % of coin-flip patterns, which then get the full decode and are not flagged)."""
    rng = np.random.default_rng(7)
    reads = []
    for _ in range(40):
        pixels = rng.integers(0, 256, size=(320, 400, 3), dtype=np.uint8)
        reads.append(half_scale_bit_errors(Image.open(io.BytesIO(files.encode(Image.fromarray(pixels), "JPEG")))))
    for message in MESSAGES:
        assert abs(np.median([read[message] for read in reads]) - len(message.bits) / 2) <= len(message.bits) / 10
    passed = sum(any(read[m] <= HALF_SCALE_MAX_ERRORS[m] for m in MESSAGES) for read in reads)
    assert passed <= 8, passed


@pytest.mark.parametrize(
    "source", ["marked-png", "marked-jpeg-q90", "marked-odd-size", "sd1-txt2img", "sd1-odd-size", "unmarked", "noise"]
)
def test_vectorised_decoder_reads_what_the_library_decoder_reads(source: str) -> None:
    """provenance.watermark.decode_bits is the library's dwtDct decoder without its per-block Python loop,
    for both message lengths (the length decides which bit each block votes for)."""
    from imwatermark import WatermarkDecoder

    rng = np.random.default_rng(7)
    image = {
        "marked-png": lambda: files.watermarked(),
        "marked-jpeg-q90": lambda: Image.open(io.BytesIO(files.watermarked_jpeg(quality=90))).convert("RGB"),
        "marked-odd-size": lambda: files.watermarked((517, 389), seed=3),
        "sd1-txt2img": lambda: Image.open(io.BytesIO(files.txt2img_png())).convert("RGB"),
        "sd1-odd-size": lambda: Image.open(io.BytesIO(files.txt2img_png((389, 517), seed=5))).convert("RGB"),
        "unmarked": lambda: make_image("real", 11, (640, 480)),
        "noise": lambda: Image.fromarray(rng.integers(0, 256, (300, 301, 3), dtype=np.uint8)),
    }[source]()
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    for length in (len(SD_BITS), len(SD1_BITS)):
        library = np.asarray(WatermarkDecoder("bits", length).decode(bgr, "dwtDct"), dtype=np.uint8)
        assert np.array_equal(decode_bits(bgr, length), library), length


def test_watermark_decoding_does_not_import_torch(tmp_path: Path) -> None:
    """invisible-watermark's package imports torch (for RivaGAN); the dwtDct decoder must not."""
    path = tmp_path / "marked.png"
    files.watermarked().save(path)
    code = (
        "import sys; from provenance import inspect; "
        f"found = inspect(open({str(path)!r}, 'rb').read()); "
        "assert [e.kind for e in found] == ['sd_watermark'], found; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---- C2PA ------------------------------------------------------------------------------------------


def test_c2pa_manifest_declaring_ai_decides_ai(signed: bytes) -> None:
    evidence = inspect(signed)
    item = _only(evidence, "c2pa")
    assert (item.points_to, item.strong) == ("ai", True)
    assert item.finding.startswith("Content Credentials: AI-generated by DALL·E 3")
    assert "signature valid, signer not on the trust list" in item.finding
    verdict = combine(evidence, MODEL_SAYS_REAL)
    assert (verdict.label, verdict.source) == ("ai", "evidence") and "Content Credentials" in verdict.reason


def test_c2pa_signer_is_trusted_with_a_trust_anchor_file(signed: bytes, trusting: ProvenanceSettings) -> None:
    item = _only(inspect(signed, trusting), "c2pa")
    assert item.strong and "signature valid, signer trusted" in item.finding


@pytest.mark.parametrize("tamper", [files.tamper_manifest, files.tamper_pixels], ids=["manifest", "pixels"])
def test_tampered_c2pa_manifest_never_decides(signed: bytes, tamper, trusting: ProvenanceSettings) -> None:  # noqa: ANN001
    for settings in (None, trusting):
        evidence = inspect(tamper(signed), settings)
        item = _only(evidence, "c2pa")
        assert (item.points_to, item.strong) == ("neutral", False)
        assert "does not validate" in item.finding and "signature valid" not in item.finding
        expected = "edited after signing" if tamper is files.tamper_manifest else "image was changed after signing"
        assert expected in item.finding
        verdict = combine(evidence, MODEL_SAYS_REAL)
        assert (verdict.label, verdict.source) == ("real", "model")


def test_c2pa_camera_capture_decides_only_from_a_trusted_signer(
    certificates: files.TestCertificates, trusting: ProvenanceSettings
) -> None:
    capture = files.c2pa_signed(certificates, source_type="digitalCapture", agent="Leica M11")
    untrusted = _only(inspect(capture), "c2pa")
    assert (untrusted.points_to, untrusted.strong) == ("real", False)  # self-signed "camera" claims cost nothing
    assert combine(inspect(capture), MODEL_SAYS_AI).label == "ai"
    trusted = _only(inspect(capture, trusting), "c2pa")
    assert (trusted.points_to, trusted.strong) == ("real", True)
    assert combine(inspect(capture, trusting), MODEL_SAYS_AI).source == "evidence"


# ---- EXIF / XMP / nothing --------------------------------------------------------------------------


def test_camera_exif_is_shown_but_never_overrides_the_model() -> None:
    evidence = inspect(files.camera_jpeg())
    item = _only(evidence, "camera_metadata")
    assert (item.points_to, item.strong) == ("real", False)
    for part in ("Canon EOS R5", "RF24-70mm", "1/250 s", "f/4", "ISO 200", "50 mm"):
        assert part in item.finding
    assert not [e for e in evidence if e.kind == "software"]  # camera firmware is not "software" evidence
    verdict = combine(evidence, MODEL_SAYS_AI)
    assert (verdict.label, verdict.source) == ("ai", "model") and "never overrides" in verdict.reason


def test_xmp_digital_source_type_is_weak_ai_evidence() -> None:
    evidence = inspect(files.xmp_png())
    kinds = {(e.kind, e.points_to, e.strong) for e in evidence}
    assert kinds == {("digital_source_type", "ai", False), ("software", "ai", False)}
    assert combine(evidence, MODEL_SAYS_REAL).label == "real"


def test_stripped_image_has_no_evidence_and_the_model_decides() -> None:
    evidence = inspect(files.stripped_jpeg())
    assert evidence == []
    verdict = combine(evidence, MODEL_SAYS_AI)
    assert (verdict.label, verdict.source) == ("ai", "model") and verdict.summary() == ""


def test_strong_evidence_both_ways_leaves_the_model_to_decide() -> None:
    both = [Evidence("sd_watermark", "mark", "ai", True), Evidence("c2pa", "camera", "real", True)]
    verdict = combine(both, MODEL_SAYS_REAL)
    assert (verdict.label, verdict.source) == ("real", "model") and "both ways" in verdict.reason


def test_an_unsure_model_is_decided_only_by_strong_evidence() -> None:
    assert combine(inspect(files.a1111_png()), MODEL_UNSURE).label == "ai"  # strong evidence decides
    weak = combine(inspect(files.camera_jpeg()), MODEL_UNSURE)  # camera EXIF alone never does
    assert (weak.label, weak.source) == ("unsure", "model")
    nothing = combine([], "unsure")
    assert (nothing.label, nothing.source) == ("unsure", "model") and nothing.to_dict()["verdict"] == "unsure"


def test_json_shape() -> None:
    evidence = inspect(files.a1111_png())
    answer = combine(evidence, "real").to_dict()
    assert set(answer) == {"verdict", "verdict_source", "verdict_reason", "evidence"}
    assert set(answer["evidence"][0]) == {"kind", "finding", "points_to", "strong"}
    json.dumps(answer)


# ---- limits and hostile input ----------------------------------------------------------------------


def test_limits_size_time_and_switch() -> None:
    data = files.a1111_png()
    (item,) = inspect(data, ProvenanceSettings(max_bytes=1000))
    assert (item.kind, item.points_to) == ("inspection", "neutral") and "not inspected" in item.finding
    late = inspect(files.encode(files.watermarked((2048, 2048)), "PNG"), ProvenanceSettings(time_budget=0.001))
    assert any(e.kind == "inspection" and "not checked within" in e.finding for e in late)
    assert inspect(data, ProvenanceSettings(enabled=False)) == []
    assert inspect(b"") == []


@pytest.mark.parametrize("item", hostile_corpus(), ids=lambda item: item.name)
def test_hostile_corpus_never_raises(item) -> None:  # noqa: ANN001
    evidence = inspect(item.data)
    assert all(isinstance(e, Evidence) for e in evidence)
    assert not [e for e in evidence if e.strong], evidence  # none of these files carries real evidence


def _hostile_metadata() -> dict[str, bytes]:
    """Metadata built to hurt parsers: huge, deeply nested, badly encoded, entity bombs, escape codes."""
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&lol3;</x:xmpmeta>'
    )
    exif_escape = files.Image.Exif()
    exif_escape[0x010F] = "\x1b[31mEvil\x1b[0m" + "A" * 5000
    exif_escape[0x0110] = "\x00\x01\x02"
    exif_escape.get_ifd(0x8769)[0x829A] = 0  # an exposure of zero seconds
    exif_escape.get_ifd(0x8769)[0x9286] = b"UNICODE\x00\xd8\x00\xd8\x00" * 50  # lone surrogates
    return {
        "huge-parameters": files.png_with_text({"parameters": "Steps: 1, Seed: 2, " * 40_000}),
        "nested-workflow": files.png_with_text({"workflow": "[" * 200_000, "prompt": "{" * 100_000}),
        "bad-utf8": files.png_with_text({"parameters": "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")}),
        "xmp-bomb": files.png_with_text({"XML:com.adobe.xmp": bomb}),
        "xmp-garbage": files.png_with_text({"XML:com.adobe.xmp": "<x:xmpmeta><unclosed"}),
        "exif-escapes": files.encode(make_image("real", 3, (64, 64)), "JPEG", exif=exif_escape),
        "comfy-wrong-types": files.png_with_text({"prompt": json.dumps({"1": [1, 2], "2": {"class_type": None}})}),
    }


@pytest.mark.parametrize("name", list(_hostile_metadata()))
def test_hostile_metadata_never_raises_and_stays_short(name: str) -> None:
    evidence = inspect(_hostile_metadata()[name])
    for item in evidence:
        assert len(item.finding) < 400 and "\x1b" not in item.finding and "\x00" not in item.finding


def _mutations(data: bytes, seed: int, count: int) -> Iterator[bytes]:
    """Copies with a few bytes flipped, and truncations, spread over the file (metadata sits near the start)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        copy = bytearray(data)
        head = min(len(copy), 4096)
        for at in rng.integers(0, head, size=int(rng.integers(1, 8))):
            copy[at] = int(rng.integers(0, 256))
        yield bytes(copy)
        yield data[: int(rng.integers(1, len(data)))]


def test_mutated_evidence_files_never_raise(signed: bytes) -> None:
    originals = {
        "a1111": files.a1111_png(),
        "a1111-jpeg": files.a1111_jpeg(),
        "comfyui": files.comfyui_png(),
        "camera": files.camera_jpeg(),
        "xmp": files.xmp_png(),
        "c2pa": signed,
    }
    checked = 0
    for seed, data in enumerate(originals.values()):
        for mutated in _mutations(data, seed, 12):
            assert all(isinstance(e, Evidence) for e in inspect(mutated))
            checked += 1
    # a signed file cut short anywhere must never pass for one whose manifest validates
    for end in np.random.default_rng(99).integers(1, len(signed) - 1, size=12):
        assert not [e for e in inspect(signed[:end]) if e.strong], end
    assert checked == 6 * 24


def test_clean_text_bounds_and_cleans() -> None:
    assert clean_text("a\x1b[2Jb\nc", 20) == "a [2Jb c"
    assert len(clean_text("x" * 1000, 50)) == 50
    assert clean_text(b"\xff\xfe bytes") == "\ufffd\ufffd bytes"


# ---- where the evidence is shown: /predict, the page, the scanner, the command line -----------------


@pytest.fixture(scope="module")
def client(exported_model: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServeSettings(model=exported_model))) as test_client:
        yield test_client


def test_predict_answers_carry_evidence_and_verdict(client: TestClient, signed: bytes) -> None:
    uploads = [
        ("files", ("render.png", files.a1111_png(), "image/png")),
        ("files", ("credentials.jpg", signed, "image/jpeg")),
        ("files", ("tampered.jpg", files.tamper_manifest(signed), "image/jpeg")),
        ("files", ("photo.jpg", files.stripped_jpeg(), "image/jpeg")),
        ("files", ("broken.jpg", b"not an image", "image/jpeg")),
    ]
    response = client.post("/predict", files=uploads)
    assert response.status_code == 200
    render, credentials, tampered, photo, broken = response.json()["results"]
    for result in (render, credentials, tampered, photo):
        assert {"label", "p_ai", "summary", "probabilities", "model_version", "time_ms"} <= set(result)
        assert "confidence" not in result and result["p_ai"] == result["probabilities"]["ai"]  # the model's own
    assert (render["verdict"], render["verdict_source"]) == ("ai", "evidence")
    assert render["evidence"][0]["kind"] == "generator_parameters" and render["evidence"][0]["strong"] is True
    assert (credentials["verdict"], credentials["verdict_source"]) == ("ai", "evidence")
    assert tampered["verdict_source"] == "model" and tampered["verdict"] == tampered["label"]
    assert tampered["evidence"][0]["points_to"] == "neutral"
    assert photo["evidence"] == [] and photo["verdict"] == photo["label"] and photo["verdict_source"] == "model"
    assert "evidence" not in broken and broken["error"]["code"] == "not_an_image"


def test_predict_decodes_each_upload_once(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The web app's model decodes a PNG at full size; the watermark check reads that decode, not the file again."""
    full_decodes: list[int] = []
    real_load = watermark.load_image
    monkeypatch.setattr(watermark, "load_image", lambda *a, **k: full_decodes.append(1) or real_load(*a, **k))
    response = client.post("/predict", files=[("files", ("txt2img.png", files.txt2img_png(), "image/png"))])
    [result] = response.json()["results"]
    assert [item["kind"] for item in result["evidence"] if item["strong"]] == ["sd_watermark"]
    assert full_decodes == []


def test_page_lists_the_evidence_under_the_verdict(client: TestClient, signed: bytes) -> None:
    uploads = [
        ("files", ("credentials.jpg", signed, "image/jpeg")),
        ("files", ("photo.jpg", files.camera_jpeg(), "image/jpeg")),
    ]
    page = client.post("/", files=uploads).text
    credentials = page[page.index('data-filename="credentials.jpg"') : page.index('data-filename="photo.jpg"')]
    assert "Decided by the file's own evidence" in credentials and "AI-generated" in credentials
    assert "Content Credentials: AI-generated by DALL·E 3 (trainedAlgorithmicMedia) — signature valid" in credentials
    assert 'class="evidence-item points-ai strong"' in credentials
    photo = page[page.index('data-filename="photo.jpg"') :]
    assert "Camera metadata: Canon EOS R5" in photo and "P(AI) " in photo and "confident" not in photo


def test_scan_reports_fill_the_evidence_column(exported_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "render.png").write_bytes(files.a1111_png())
    (folder / "photo.jpg").write_bytes(files.stripped_jpeg())
    (folder / "camera.jpg").write_bytes(files.camera_jpeg())
    out = tmp_path / "report"
    run_module("scan", str(folder), "--model", str(exported_model), "--output", str(out), "--workers", "1")
    with out.with_suffix(".csv").open(newline="") as handle:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(handle)}
    assert rows["render.png"]["evidence"].startswith("evidence decides ai | Generator settings (AUTOMATIC1111")
    assert rows["photo.jpg"]["evidence"] == ""
    assert rows["camera.jpg"]["evidence"].startswith("model decides | Camera metadata: Canon EOS R5")
    run_module("scan", str(folder), "--model", str(exported_model), "--output", str(tmp_path / "off"), "--no-evidence")
    with (tmp_path / "off.csv").open(newline="") as handle:
        assert all(row["evidence"] == "" for row in csv.DictReader(handle))


def test_command_line_prints_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "render.png"
    path.write_bytes(files.comfyui_png())
    record = json.loads(run_module("provenance", str(path)).stdout)
    assert record["evidence"][0]["kind"] == "generator_parameters" and record["time_ms"] >= 0


def test_benchmark_on_a_labelled_folder_counts_findings_and_false_positives(tmp_path: Path) -> None:
    """``python -m provenance.benchmark --data DIR`` on files in the real tools' formats: what it finds,
    on which label, and the real photos it would have flagged."""
    samples = {
        "ai/compvis/00001.png": files.txt2img_png(),
        "ai/automatic1111/00001.png": files.a1111_png(),
        "real/camera/00001.jpg": files.camera_jpeg(),
        "real/camera/00002.jpg": files.stripped_jpeg(),
    }
    for name, data in samples.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "results.jsonl"
    printed = run_module("provenance.benchmark", "--data", str(tmp_path), "--bit-errors", "--out", str(out)).stdout
    assert "files: 2 ai, 2 real" in printed
    assert "| sd_watermark | ai | yes | 1/2 | 0/2 | 0 |" in printed
    assert "| generator_parameters | ai | yes | 1/2 | 0/2 | 0 |" in printed
    assert "| camera_metadata | real | no | 0/2 | 1/2 | - |" in printed
    assert "| ai | 2 | 0 | 0 |" in printed and "| real | 0 | 0 | 2 |" in printed  # decided by evidence
    records = {Path(record["path"]).parent.name: record for record in map(json.loads, out.read_text().splitlines())}
    assert records["compvis"]["bit_errors"][SD1.name] <= SD1.max_errors
    assert set(records["compvis"]["ms"]) == {
        "Content Credentials",
        "Stable Diffusion watermark",
        "file metadata",
        "inspect()",
    }
