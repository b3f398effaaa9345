"""Core of the real-vs-AI image detector, shared by training, export, the TorchServe handler and the web app.

It holds the model builder, the single preprocessing implementation, the class names and the
checkpoint format.  It imports none of the packages built on it.  Importing this package does not
import torch: ``detector.preprocessing``, ``detector.labels`` and ``detector.calibration`` work with
NumPy and Pillow alone, so torch-free consumers (ONNX Runtime serving) can use them.
"""

from pathlib import Path

__version__ = "0.1.0"

#: the trained model shipped in the repository (models/default/MODEL_CARD.md says what it is and how
#: it was made); entry points fall back to it when no exported model is given or built
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "default" / "model.pt"
