"""Core of the real-vs-AI image detector, shared by training, export, the TorchServe handler and the web app.

It holds the model builder, the single preprocessing implementation, the class names and the
checkpoint format.  It imports none of the packages built on it.  Importing this package does not
import torch: ``detector.preprocessing``, ``detector.labels`` and ``detector.calibration`` work with
NumPy and Pillow alone, so torch-free consumers (ONNX Runtime serving) can use them.
"""

__version__ = "0.1.0"
