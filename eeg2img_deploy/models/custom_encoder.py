"""A user's own EEG encoder: ``--encoder-factory MODULE:CALLABLE --encoder CKPT [--encoder-channels FILE]``.

``MODULE`` is an importable module (``my_lab.encoders``) or a ``.py`` file path; ``CALLABLE`` takes no
arguments and returns the ``torch.nn.Module``. The checkpoint is that module's state dict (the wrappers
``load_state_dict_file`` accepts), loaded strictly. The factory's source file is hashed, so an edited model
file exports again and the manifest says which code made the bundle. Importing the module runs its code:
that is what the user asks for by naming it (the checkpoint itself is still read tensors-only).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..errors import CheckpointError, EncoderContractError


def parse_factory(factory: str) -> tuple[str, str]:
    """``'pkg.mod:build'`` or ``'path/to/model.py:build'`` -> (module or file, callable name)."""
    module, sep, name = factory.rpartition(":")  # rpartition: a Windows drive letter keeps its colon
    if not sep or not module or not name.isidentifier():
        raise CheckpointError(f"--encoder-factory {factory!r} is not MODULE:CALLABLE (e.g. my_lab.encoders:build, "
                              "or my_encoder.py:build)")
    return module, name


def factory_source(factory: str) -> Path:
    """The file that defines the factory's module, found without running it (hashed into the export's fingerprint)."""
    module, _ = parse_factory(factory)
    if module.endswith(".py"):
        path = Path(module)
    else:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as e:
            raise CheckpointError(f"--encoder-factory {factory}: cannot find module {module} ({e})") from None
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            raise CheckpointError(f"--encoder-factory {factory}: no module {module} on the Python path (pass a .py file "
                                  "path instead, e.g. my_encoder.py:build)")
        path = Path(spec.origin)
    if not path.is_file():
        raise CheckpointError(f"--encoder-factory {factory}: {path} does not exist")
    return path


def _import(factory: str) -> ModuleType:
    module, _ = parse_factory(factory)
    try:
        if not module.endswith(".py"):
            return importlib.import_module(module)
        path = factory_source(factory).resolve()
        name = f"eeg2img_user_encoder_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded  # dataclasses and pickling look classes up by module name
        spec.loader.exec_module(loaded)
        return loaded
    except CheckpointError:
        raise
    except Exception as e:  # the user's module failed to import: one line saying why
        raise CheckpointError(f"--encoder-factory {factory}: importing {module} raised {type(e).__name__}: {e}") from None


def build_module(factory: str):
    """Import the factory's module, call it and return ``(module, source file, callable name)``; the caller loads
    the checkpoint into it (:func:`~.encoders.load_eeg_encoder`) and checks the contract."""
    import torch

    source = factory_source(factory)
    _, name = parse_factory(factory)
    build = getattr(_import(factory), name, None)
    if not callable(build):
        raise CheckpointError(f"--encoder-factory {factory}: {source.name} has no callable {name!r}")
    try:
        module = build()
    except Exception as e:
        raise EncoderContractError(f"--encoder-factory {factory}: {name}() raised {type(e).__name__}: {e}") from None
    if not isinstance(module, torch.nn.Module):
        raise EncoderContractError(f"--encoder-factory {factory}: {name}() returned {type(module).__name__}, "
                                   "expected a torch.nn.Module")
    return module, source, name
