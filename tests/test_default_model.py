"""The model shipped in ``models/default``: calibrated, and as good as its card says on sources it never saw.

The rates asserted here are the card's figures on a fixed sample of its test sources (whole sources
held out of training and calibration), with a margin for the sample's size; a retrained model that
falls below them has got worse where it matters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detector import SHIPPED_MODEL
from detector.labels import AI
from detector.runtimes import open_detector
from training.data import read_manifest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "realvsai-v1" / "manifest.csv"
RECIPE = SHIPPED_MODEL.parent / "recipe.json"
PER_LABEL = 80

#: the shipped model on this sample: balanced accuracy 0.631, ROC-AUC 0.745, real photos flagged 0.087
#: (``pytest tests/test_default_model.py -s`` prints them); the bounds leave a margin for 160 images
MIN_BALANCED_ACCURACY = 0.58
MIN_ROC_AUC = 0.68
MAX_REAL_FLAGGED = 0.15


def test_the_shipped_model_is_calibrated_and_says_what_it_was_trained_on() -> None:
    detector = open_detector(SHIPPED_MODEL, threads=1)
    meta = detector.metadata
    assert meta.architecture == "efficientnet_lite0"
    assert 0 < meta.threshold < 1 and meta.temperature > 0
    assert meta.version == json.loads(RECIPE.read_text())["model_version"]
    assert meta.training_config["split_by"] == "source"
    assert set(meta.training_config["holdout_sources"]) == set(json.loads(RECIPE.read_text())["holdout_sources"])
    assert {"accuracy", "roc_auc", "ece"} <= set(meta.test_metrics)


@pytest.mark.skipif(not DATA.is_file(), reason="needs ../shared/data/realvsai-v1 beside the checkout (CI has it)")
def test_the_shipped_model_on_a_fixed_sample_of_sources_it_never_saw() -> None:
    holdout = set(json.loads(RECIPE.read_text())["holdout_sources"])
    unseen = [s for s in read_manifest(DATA) if s.source in holdout]
    sample = []
    for label in ("ai", "real"):
        members = [s for s in unseen if s.label == label]
        step = len(members) / PER_LABEL
        sample += [members[int(i * step)] for i in range(PER_LABEL)]
    detector = open_detector(SHIPPED_MODEL, threads=2)
    ai = detector.metadata.classes.index(AI)
    batch = np.stack([detector.preprocess(s.path) for s in sample])
    p_ai = np.concatenate([detector.probabilities(batch[i : i + 32])[:, ai] for i in range(0, len(batch), 32)])
    is_ai = np.array([s.label == AI for s in sample])
    said_ai = p_ai >= detector.metadata.threshold
    caught, flagged = said_ai[is_ai].mean(), said_ai[~is_ai].mean()
    balanced = (caught + 1 - flagged) / 2
    auc = roc_auc_score(is_ai, p_ai)
    print(f"balanced accuracy {balanced:.3f}, ROC-AUC {auc:.3f}, AI caught {caught:.3f}, real flagged {flagged:.3f}")
    assert balanced >= MIN_BALANCED_ACCURACY
    assert auc >= MIN_ROC_AUC
    assert flagged <= MAX_REAL_FLAGGED
