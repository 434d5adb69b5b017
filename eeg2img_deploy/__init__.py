"""eeg2img-deploy: the EEG-to-image models of Li et al. (NeurIPS 2024) as a lean inference engine.

Importing the package pulls in no torch, diffusers, onnx or tensorrt: heavy imports live inside the
functions that need them, so the runtime and ``eeg2img-deploy --help`` work on a bare install.
"""

__version__ = "0.1.0"
