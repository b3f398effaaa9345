"""XMP packets: IPTC ``DigitalSourceType`` and ``CreatorTool``, parsed with defusedxml (no entity expansion).

Unsigned metadata: it is shown, points weakly, and never decides.
"""

from __future__ import annotations

from defusedxml import ElementTree

from provenance.evidence import AI, REAL, SOFTWARE, SOURCE_TYPE, Evidence, clean_text
from provenance.known import AI_SOURCE_TYPES, CAPTURE_SOURCE_TYPES, is_generator, source_type_name
from provenance.metadata import FileMetadata

#: XMP packets are a few kilobytes; anything far larger is not parsed
MAX_XMP_BYTES = 1_000_000


def check(meta: FileMetadata) -> list[Evidence]:
    """Weak evidence from the XMP packet's digital source type and creator tool."""
    if not meta.xmp or len(meta.xmp) > MAX_XMP_BYTES:
        return []
    values = _values(meta.xmp.strip(b"\x00 \t\r\n"), {"DigitalSourceType", "CreatorTool"})
    found: list[Evidence] = []
    for value in values.get("DigitalSourceType", [])[:1]:
        code = source_type_name(value)
        if code in AI_SOURCE_TYPES:
            text = f"XMP DigitalSourceType: {code} ({AI_SOURCE_TYPES[code]}; unsigned)"
            found.append(Evidence(SOURCE_TYPE, text, AI))
        elif code in CAPTURE_SOURCE_TYPES:
            text = f"XMP DigitalSourceType: {code} ({CAPTURE_SOURCE_TYPES[code]}; unsigned)"
            found.append(Evidence(SOURCE_TYPE, text, REAL))
    for tool in values.get("CreatorTool", [])[:1]:
        if is_generator(tool):
            found.append(Evidence(SOFTWARE, f"XMP CreatorTool names an image generator: {clean_text(tool, 60)}", AI))
    return found


def _values(packet: bytes, names: set[str]) -> dict[str, list[str]]:
    """Text of the elements and attributes whose local name is in ``names``, whatever their namespace prefix."""
    root = ElementTree.fromstring(packet, forbid_dtd=True)
    found: dict[str, list[str]] = {}
    for element in root.iter():
        local = str(element.tag).rsplit("}", 1)[-1]
        if local in names:
            text = (element.text or "").strip() or " ".join(t.strip() for t in element.itertext() if t.strip())
            resource = next((v for k, v in element.attrib.items() if k.endswith("}resource")), "")
            if text or resource:
                found.setdefault(local, []).append(text or resource)
        for key, value in element.attrib.items():
            name = key.rsplit("}", 1)[-1]
            if name in names:
                found.setdefault(name, []).append(value)
    return found
