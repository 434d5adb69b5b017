"""Error types. Each message names the thing, what was expected, what was found, and the fix."""


class Eeg2ImgError(Exception):
    """Base class of every error this toolkit raises on purpose."""


class OptionError(Eeg2ImgError, ValueError):
    """An option value out of range or of the wrong kind (the message names the CLI option)."""


class EEGInputError(Eeg2ImgError, ValueError):
    """EEG data with the wrong shape, channels, sampling rate, window or values."""


class CheckpointError(Eeg2ImgError):
    """A weights file that is missing, unreadable, or does not match the model's keys and shapes."""


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """A component of the weights folder is missing."""


class EncoderContractError(CheckpointError):
    """An EEG encoder module that breaks the contract: (B, C, T) f32 + (B,) i64 -> (B, 1024), deterministic, EEG-driven."""


class ManifestError(Eeg2ImgError):
    """A bundle or engine folder whose manifest is missing, foreign, or does not match its files."""


class ExportError(Eeg2ImgError):
    """An export that failed validation or could not be written."""


class EngineError(Eeg2ImgError):
    """An engine that cannot be built or loaded on this machine."""


class BackendUnavailableError(Eeg2ImgError):
    """A backend (GPU, TensorRT, CUDA provider) that this machine does not have."""


class ServingError(Eeg2ImgError):
    """A Triton server that cannot be reached, or that rejected a request."""


class SettingsError(Eeg2ImgError, ValueError):
    """A combination of run settings that cannot work (e.g. a strength that leaves no denoising step)."""


class NonFiniteError(Eeg2ImgError):
    """A stage produced NaN or infinite values; nothing is written from them."""
