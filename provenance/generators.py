"""Generator settings written into the file by image-generation tools: strong evidence of AI generation.

* AUTOMATIC1111 / Forge / SD.Next: a ``parameters`` PNG text chunk (EXIF UserComment in JPEG/WebP),
  the prompt followed by a line like ``Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, ...``;
* ComfyUI: ``prompt`` (the executed graph) and ``workflow`` (the editor's graph) as JSON text chunks;
* InvokeAI (``invokeai_metadata``, ``sd-metadata``, ``Dream``) and NovelAI (``Software: NovelAI``
  with a JSON ``Comment``).

Text that only resembles these (a ``parameters`` chunk without sampler settings, JSON that does
not parse as a node graph) is not counted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from provenance.evidence import AI, GENERATOR_PARAMETERS, Evidence, clean_text
from provenance.metadata import FileMetadata, text_value, user_comment

#: JSON longer than this is not parsed (ComfyUI graphs are tens of kilobytes)
MAX_JSON_CHARS = 4_000_000
_A1111_SETTINGS = re.compile(r"(?:^|\n)(Steps: *\d+,.*)$", re.DOTALL)
_SETTING = re.compile(r"(Steps|Sampler|CFG scale|Seed|Size|Model): *([^,\n]{1,60})")
_USER_COMMENT = 0x9286


def check(meta: FileMetadata) -> list[Evidence]:
    """Strong ``ai`` evidence for each generator's settings found in the file's text metadata."""
    found: list[Evidence] = []
    parameters = meta.info.get("parameters")
    source = "PNG text 'parameters'"
    if parameters is None and _USER_COMMENT in meta.exif_ifd:
        parameters, source = user_comment(meta.exif_ifd[_USER_COMMENT]), "EXIF UserComment"
    if parameters is not None:
        evidence = _automatic1111(text_value(parameters), source)
        if evidence is not None:
            found.append(evidence)
    evidence = _comfyui(meta.info.get("prompt"), meta.info.get("workflow"))
    if evidence is not None:
        found.append(evidence)
    for key in ("invokeai_metadata", "sd-metadata", "Dream"):
        if key in meta.info:
            found.append(
                Evidence(GENERATOR_PARAMETERS, f"Generator settings in text '{key}' (InvokeAI)", AI, strong=True)
            )
            break
    if text_value(meta.info.get("Software", "")).strip() == "NovelAI" and _json(meta.info.get("Comment")) is not None:
        found.append(Evidence(GENERATOR_PARAMETERS, "Generator settings in text 'Comment' (NovelAI)", AI, strong=True))
    return found


def _automatic1111(text: str, source: str) -> Evidence | None:
    match = _A1111_SETTINGS.search(text[-20_000:])
    if match is None:
        return None
    settings = dict(_SETTING.findall(match.group(1)))
    if not {"Sampler", "Seed", "CFG scale"} & settings.keys():
        return None
    keys = [key for key in ("Steps", "Sampler", "Model") if key in settings]
    shown = ", ".join(f"{key} {clean_text(settings[key], 40)}" for key in keys)
    prompt = text[: text.find("\n")] if "\n" in text else ""
    if prompt and not prompt.startswith(("Negative prompt:", "Steps:")):
        shown += f"; prompt “{clean_text(prompt, 60)}”"
    return Evidence(GENERATOR_PARAMETERS, f"Generator settings (AUTOMATIC1111, {source}): {shown}", AI, strong=True)


def _comfyui(prompt: object, workflow: object) -> Evidence | None:
    nodes: list[str] = []
    graph = _json(prompt)
    if isinstance(graph, dict):
        nodes = [str(node["class_type"]) for node in graph.values() if isinstance(node, dict) and "class_type" in node]
    editor = _json(workflow)
    if not nodes and isinstance(editor, dict) and isinstance(editor.get("nodes"), list):
        nodes = [str(node["type"]) for node in editor["nodes"] if isinstance(node, dict) and "type" in node]
    if not nodes:
        return None
    kinds = list(dict.fromkeys(nodes))
    listed = ", ".join(clean_text(kind, 30) for kind in kinds[:4]) + (", …" if len(kinds) > 4 else "")
    chunks = " and ".join(name for name, value in (("prompt", prompt), ("workflow", workflow)) if value is not None)
    return Evidence(
        GENERATOR_PARAMETERS,
        f"ComfyUI workflow in PNG text ({chunks}): {len(nodes)} nodes ({listed})",
        AI,
        strong=True,
    )


def _json(value: object) -> Any:
    """Parsed JSON, or None for anything missing, oversized, malformed or nested beyond Python's limits."""
    if value is None:
        return None
    text = text_value(value)
    if len(text) > MAX_JSON_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
