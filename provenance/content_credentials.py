"""C2PA manifests (Content Credentials), read and validated by ``c2pa-python``.

The library checks the claim signature, the hashes that bind each assertion to the claim and the
data hash that binds the claim to the image's bytes; its validation state is ``Trusted`` (all of
that, and the signer chains to a configured trust anchor), ``Valid`` (all of that, signer not on
the trust list) or ``Invalid`` (some check failed: the image or the manifest was changed after
signing, or the signature does not verify).

What this module makes of it:

* a manifest that validates (``Valid`` or ``Trusted``) and declares AI generation is **strong**
  evidence for ``ai``, trusted signer or not: the signature proves the manifest belongs to these
  exact bytes, and nobody forges a claim that their own image is machine-made to get it flagged;
* one declaring a camera capture points to ``real`` but is strong only when the signer is trusted:
  a self-signed "digital capture" claim costs a forger nothing;
* an ``Invalid`` manifest is shown with what failed and points nowhere: a tampered manifest must
  never decide.
"""

from __future__ import annotations

import io
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from provenance.evidence import AI, C2PA, NEUTRAL, REAL, Evidence, clean_text
from provenance.known import AI_SOURCE_TYPES, CAPTURE_SOURCE_TYPES, is_generator, source_type_name

log = logging.getLogger(__name__)

#: failure codes that say only "the signer is not on the trust list", not that anything was altered
_UNTRUSTED = {"signingCredential.untrusted"}
#: validation codes worth naming when a manifest fails, in the words a person understands
_FAILURES = {
    "assertion.dataHash.mismatch": "the image was changed after signing",
    "assertion.bmffHash.mismatch": "the image was changed after signing",
    "assertion.boxesHash.mismatch": "the image was changed after signing",
    "assertion.hashedURI.mismatch": "the manifest was edited after signing",
    "claimSignature.mismatch": "the signature does not match the manifest",
    "signingCredential.invalid": "the signing certificate is invalid",
    "signingCredential.expired": "the signing certificate had expired",
    "signingCredential.revoked": "the signing certificate is revoked",
}


def check(data: bytes, trust_anchors: Path | None = None) -> list[Evidence]:
    """Evidence from the file's C2PA manifest store; nothing when it has none."""
    import c2pa  # imported here: loading the native library costs time a caller may not need

    if b"c2pa" not in data and b"jumb" not in data:
        return []  # every embedding (JPEG APP11, PNG caBX, BMFF uuid, RIFF C2PA) carries these labels
    try:
        with c2pa.Reader(None, io.BytesIO(data), None, _context(trust_anchors)) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return []
    except c2pa.C2paError.NotSupported:
        return []
    except c2pa.C2paError as error:
        log.debug("unreadable C2PA data: %s", error)
        return [Evidence(C2PA, "Content Credentials: present but unreadable (corrupt manifest), not used", NEUTRAL)]
    return [_judge(store)]


def _judge(store: dict[str, Any]) -> Evidence:
    manifest = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
    state = str(store.get("validation_state") or "Invalid")
    failures = [
        str(item.get("code"))
        for item in ((store.get("validation_results") or {}).get("activeManifest") or {}).get("failure") or []
        if isinstance(item, dict)
    ]
    broken = state not in ("Valid", "Trusted") or any(code not in _UNTRUSTED for code in failures)
    trusted = state == "Trusted" and not broken
    claim = _claim(manifest)
    signer = _signer(manifest)
    if broken:
        problems = sorted({_FAILURES.get(code, code) for code in failures if code not in _UNTRUSTED}) or [state]
        says = f"says {claim[1]}" if claim else "present"
        return Evidence(
            C2PA,
            f"Content Credentials: {says} — but the manifest does not validate ({'; '.join(problems)}); not used",
            NEUTRAL,
        )
    signature = "signature valid, signer trusted" if trusted else "signature valid, signer not on the trust list"
    signature += f" ({signer})" if signer else ""
    if claim is None:
        return Evidence(C2PA, f"Content Credentials: no statement about AI generation — {signature}", NEUTRAL)
    points_to, statement = claim
    return Evidence(
        C2PA,
        f"Content Credentials: {statement} — {signature}",
        points_to,  # type: ignore[arg-type]
        strong=points_to == AI or trusted,
    )


def _claim(manifest: dict[str, Any]) -> tuple[str, str] | None:
    """(direction, sentence) from the active manifest's actions, or None when it says nothing either way."""
    agents: list[str] = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            if not isinstance(action, dict):
                continue
            agent = _agent_name(action.get("softwareAgent"))
            if agent:
                agents.append(agent)
            source = source_type_name(action.get("digitalSourceType"))
            agent = clean_text(agent, 40)
            if source in AI_SOURCE_TYPES:
                return AI, f"{AI_SOURCE_TYPES[source]}{' by ' + agent if agent else ''} ({source})"
            if source in CAPTURE_SOURCE_TYPES:
                return REAL, f"{CAPTURE_SOURCE_TYPES[source]} ({agent + ', ' if agent else ''}{source})"
    generators = agents + [_agent_name(info) for info in manifest.get("claim_generator_info") or []]
    generators.append(str(manifest.get("claim_generator") or ""))
    for name in generators:
        if is_generator(name):
            return AI, f"made with {clean_text(name, 40)}, an image generator"
    return None


def _agent_name(agent: object) -> str:
    if isinstance(agent, dict):
        return " ".join(str(agent.get(key) or "") for key in ("name", "version")).strip()
    return str(agent or "")


def _signer(manifest: dict[str, Any]) -> str:
    info = manifest.get("signature_info") or {}
    name = info.get("issuer") or info.get("common_name") if isinstance(info, dict) else None
    return f"issued by {clean_text(name, 40)}" if name else ""


@lru_cache(maxsize=4)
def _context(trust_anchors: Path | None):  # noqa: ANN202 - c2pa.Context, imported lazily
    """A reader context per trust-anchor file (built once: parsing a trust list is not free)."""
    import c2pa

    settings: dict[str, Any] = {"verify": {"verify_trust": True, "ocsp_fetch": False, "remote_manifest_fetch": False}}
    if trust_anchors is not None:
        settings["trust"] = {"user_anchors": Path(trust_anchors).read_text()}
    return c2pa.Context.from_dict(settings)
