"""Files carrying provenance evidence, made here with the real tools' formats and the real libraries.

* PNGs with AUTOMATIC1111's ``parameters`` and ComfyUI's ``prompt``/``workflow`` text chunks;
* images watermarked with ``invisible-watermark``'s encoder: SDXL's 48-bit message, and SD 1.x's
  ``StableDiffusionV1`` bytes the way CompVis ``scripts/txt2img.py`` marks and saves its outputs;
* JPEGs signed with ``c2pa-python`` under a test certificate chain made with ``cryptography``;
* a JPEG with camera EXIF, a PNG with XMP, and a stripped image.
"""

from __future__ import annotations

import datetime
import io
import json
from dataclasses import dataclass

import cv2
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helpers import make_image
from PIL import Image, PngImagePlugin

from provenance.watermark import SD_BITS

#: CompVis scripts/txt2img.py: ``wm = "StableDiffusionV1"``
SD1_WATERMARK = "StableDiffusionV1"

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"

A1111_PARAMETERS = (
    "a photo of an astronaut riding a horse on mars\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.7.0"
)
COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
}
COMFY_WORKFLOW = {
    "last_node_id": 9,
    "nodes": [{"id": int(key), "type": node["class_type"]} for key, node in COMFY_PROMPT.items()],
}


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_with_text(chunks: dict[str, str], image: Image.Image | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    return encode(image or make_image("ai", 40, (320, 256)), "PNG", pnginfo=info)


def a1111_png() -> bytes:
    return png_with_text({"parameters": A1111_PARAMETERS})


def a1111_jpeg() -> bytes:
    """A1111 saves JPEG settings in EXIF UserComment, UNICODE-prefixed UTF-16 (as piexif writes it)."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_PARAMETERS.encode("utf-16-be")
    return encode(make_image("ai", 41, (320, 256)), "JPEG", exif=exif, quality=92)


def comfyui_png() -> bytes:
    return png_with_text({"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)})


def watermarked(size: tuple[int, int] = (512, 512), seed: int = 42) -> Image.Image:
    """An image marked as Stable Diffusion's scripts mark theirs (``WatermarkEncoder``, ``dwtDct``)."""
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", [int(bit) for bit in SD_BITS])
    bgr = cv2.cvtColor(np.asarray(make_image("ai", seed, size)), cv2.COLOR_RGB2BGR)
    return Image.fromarray(encoder.encode(bgr, "dwtDct")[:, :, ::-1])


def txt2img_png(size: tuple[int, int] = (512, 512), seed: int = 42) -> bytes:
    """An output as CompVis ``scripts/txt2img.py`` writes it: marked with SD 1.x's bytes, saved as PNG.

    The script's own steps: ``set_watermark('bytes', wm.encode('utf-8'))``, then ``put_watermark``
    (RGB to BGR, ``encode(img, 'dwtDct')``, back to RGB) and ``img.save(... .png)``.
    """
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", SD1_WATERMARK.encode("utf-8"))
    bgr = cv2.cvtColor(np.array(make_image("ai", seed, size)), cv2.COLOR_RGB2BGR)
    return encode(Image.fromarray(encoder.encode(bgr, "dwtDct")[:, :, ::-1]), "PNG")


def watermarked_jpeg(quality: int = 90, subsampling: int = 0) -> bytes:
    """JPEG-compressed after marking; ``subsampling=0`` keeps full chroma (4:4:4), where the mark lives."""
    return encode(watermarked(), "JPEG", quality=quality, subsampling=subsampling)


def camera_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    exif[0x0131] = "Firmware Version 1.8.1"
    sub = exif.get_ifd(0x8769)
    sub[0x829A] = 1 / 250  # exposure time
    sub[0x829D] = 4.0  # f-number
    sub[0x8827] = 200  # ISO
    sub[0x920A] = 50.0  # focal length
    sub[0xA434] = "RF24-70mm F2.8 L IS USM"
    sub[0x9003] = "2024:05:01 10:11:12"
    return encode(make_image("real", 43, (400, 300)), "JPEG", exif=exif, quality=90)


def xmp_png(source_type: str = "trainedAlgorithmicMedia", tool: str = "Adobe Firefly") -> bytes:
    packet = (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        f' xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="{tool}">'
        f"<Iptc4xmpExt:DigitalSourceType>{IPTC}{source_type}</Iptc4xmpExt:DigitalSourceType>"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet)
    return encode(make_image("ai", 44, (320, 256)), "PNG", pnginfo=info)


def stripped_jpeg() -> bytes:
    """A photo-like image without any metadata (as social networks leave them), big enough for the watermark check."""
    return encode(make_image("real", 45, (512, 384)), "JPEG", quality=90)


@dataclass(frozen=True)
class TestCertificates:
    """A test CA and an end-entity signing certificate issued by it (ES256, C2PA-compatible extensions)."""

    ca_pem: bytes
    chain_pem: bytes
    key_pem: bytes


def make_certificates() -> TestCertificates:
    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Detector Test Authority"),
            ]
        )

    def usage(**flags: bool) -> x509.KeyUsage:
        names = (
            "digital_signature content_commitment key_encipherment data_encipherment key_agreement "
            "key_cert_sign crl_sign encipher_only decipher_only"
        ).split()
        return x509.KeyUsage(**{n: flags.get(n, False) for n in names})

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Detector Test Root CA"))
        .issuer_name(name("Detector Test Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(name("Detector Test Signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return TestCertificates(
        ca_pem=ca.public_bytes(pem),
        chain_pem=signer.public_bytes(pem) + ca.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def c2pa_signed(
    certificates: TestCertificates,
    source_type: str = "trainedAlgorithmicMedia",
    agent: str = "DALL·E",
    image: bytes | None = None,
) -> bytes:
    """A JPEG with an embedded C2PA manifest whose ``c2pa.created`` action declares ``source_type``."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "detector-tests", "version": "1.0"}],
        "title": "image.jpg",
        "format": "image/jpeg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC + source_type,
                            "softwareAgent": {"name": agent, "version": "3"},
                        }
                    ]
                },
            }
        ],
    }
    source = image or encode(make_image("ai", 46, (400, 300)), "JPEG", quality=90)
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certificates.chain_pem, certificates.key_pem, None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
        signed = io.BytesIO()
        builder.sign(signer, "image/jpeg", io.BytesIO(source), signed)
        return signed.getvalue()


def tamper_manifest(signed: bytes) -> bytes:
    """The same file with one byte of the manifest's actions assertion changed after signing."""
    at = signed.index("DALL·E".encode())
    return signed[:at] + b"X" + signed[at + 1 :]


def tamper_pixels(signed: bytes) -> bytes:
    """The same file with one byte of the compressed image changed after signing."""
    at = len(signed) - 100
    return signed[:at] + bytes([signed[at] ^ 0x55]) + signed[at + 1 :]
