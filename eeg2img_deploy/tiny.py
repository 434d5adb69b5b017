"""``init-tiny``: a complete, seeded weights folder in the real on-disk formats, with tiny weights.

Every command consumes it exactly as it consumes real weights. The ATM encoder and the diffusion
prior are full size (3 M and 10 M parameters: they are small anyway) and saved as the paper saves
them; SDXL-Turbo, the IP-Adapter and TAESDXL shrink to a few hundred thousand parameters.

Random small weights hide bugs: an IP-Adapter branch or a subject token that moves the image by less
than the parity tolerance proves nothing. So the IP-Adapter's projection and key/value weights, the
subject table and the prior's condition layers are scaled up until each moves the output by far
more than any tolerance (``tests/test_sensitivity.py`` checks it). The images are still noise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .eeg.spec import CHANNELS_63
from .errors import OptionError
from .quiet import TORCHVISION_FALLBACK, quiet
from .weights import WeightsLayout, resolve_weights

log = logging.getLogger(__name__)

TEXT_HIDDEN = 32  # each tiny text encoder's width; the UNet's cross-attention dim is twice this
IP_TOKENS = 4  # the SDXL ViT-H IP-Adapter's image tokens
CLIP_IMAGE_DIM = 1024  # ViT-H-14 embedding size: the prior's output, the IP-Adapter's input
TAESD_OUT_GAIN = 0.03  # TAESD's last conv after He init: images mostly inside [0, 1], some clipped

SDXL_TURBO_SCHEDULER = {  # stabilityai/sdxl-turbo scheduler/scheduler_config.json
    "_class_name": "EulerAncestralDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


def _tokenizer():
    """A CLIP BPE tokenizer whose vocabulary is the 256 byte symbols (bare and word-final), no merges."""
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), 256)]
    extra = [b for b in range(256) if b not in printable]
    symbols = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]  # GPT-2 byte map
    vocab = {c: i for i, c in enumerate(symbols)}
    vocab.update({c + "</w>": i + len(symbols) for i, c in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=37, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=TEXT_HIDDEN, hidden_act="gelu",
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )


def tiny_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), norm_num_groups=8,
        use_linear_projection=True, cross_attention_dim=2 * TEXT_HIDDEN, transformer_layers_per_block=(1, 1),
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + TEXT_HIDDEN,
    )


def tiny_vae():
    from diffusers import AutoencoderKL

    # Four blocks: the real 8x downsampling, so 512x512 images <-> 4x64x64 latents as in SDXL.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8,
        sample_size=512, scaling_factor=0.13025, force_upcast=True,
    )


def tiny_taesd():
    from diffusers import AutoencoderTiny

    return AutoencoderTiny(
        in_channels=3, out_channels=3, latent_channels=4, encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
    )


def _save_taesd(taesd, folder: Path) -> None:
    """As madebyollin/taesdxl's folder. diffusers' AutoencoderTiny records a ``block_out_channels`` its
    constructor does not take, and every load would warn about it; the real config has none."""
    taesd.save_pretrained(folder, safe_serialization=True)
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    del config["block_out_channels"]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def ip_adapter_state_dict(unet, generator, *, scale: float = 9.0) -> dict:
    """h94 layout: ``image_proj.{proj,norm}.*`` and ``ip_adapter.{1,3,5..}.to_{k,v}_ip.weight``.

    The key ids count the UNet's cross-attention processors in ``attn_processors`` order, 1, 3, 5...
    as diffusers' loader reads them. ``scale`` (on the image keys/values) makes the branch dominate
    the text branch, so the image embedding moves the image far more than any parity tolerance.
    """
    import torch

    cross = unet.config.cross_attention_dim
    modules = dict(unet.named_modules())
    sd = {
        "image_proj.proj.weight": torch.randn(IP_TOKENS * cross, CLIP_IMAGE_DIM, generator=generator) * (3.0 / CLIP_IMAGE_DIM**0.5),
        "image_proj.proj.bias": torch.randn(IP_TOKENS * cross, generator=generator) * 0.1,
        "image_proj.norm.weight": 1.0 + 0.1 * torch.randn(cross, generator=generator),
        "image_proj.norm.bias": 0.1 * torch.randn(cross, generator=generator),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        hidden = modules[name[: -len(".processor")]].to_k.out_features
        for kv in ("to_k_ip", "to_v_ip"):
            sd[f"ip_adapter.{key_id}.{kv}.weight"] = torch.randn(hidden, cross, generator=generator) * (scale / cross**0.5)
        key_id += 2
    return sd


def _strengthen_stage2(pipe, taesd, generator) -> None:
    """Let the cross-attention blocks and the decoders carry their input to the pixels.

    At PyTorch's default init the UNet's transformer blocks add little to their residual stream, the
    VAE's images span a third of the range, and TAESD's ReLU stack shrinks every layer so its image
    is one flat colour: none of them would show a wrong image embedding or a wrong latent.
    """
    import torch
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    with torch.no_grad():
        for module in pipe.unet.modules():
            if isinstance(module, Transformer2DModel):
                module.proj_out.weight.mul_(3.0)
        pipe.vae.decoder.conv_out.weight.mul_(1.5)
        pipe.vae.decoder.conv_out.bias.mul_(1.5)
        convs = [m for m in taesd.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
        for conv in convs:  # He init keeps the signal's scale through each ReLU
            fan_in = conv.weight[0].numel()
            conv.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
            if conv.bias is not None:
                conv.bias.zero_()
        last = convs[-1]
        last.weight.mul_(TAESD_OUT_GAIN)
        if last.bias is not None:
            last.bias.fill_(0.5)  # DecoderTiny maps [0, 1] to [-1, 1]: centre the image on mid-grey


def _sharpen_vae_posterior(vae, seed: int, mean_std: float = 5.0, log_var: float = -6.0) -> None:
    """Give the VAE encoder the SDXL VAE's posterior: unscaled means of std ~5, a narrow variance.

    At init its means have std 0.3 and its std is 1, so after the scaling factor the low-level
    path's start image would be lost in the unit noise the paper adds; only ``quant_conv`` changes.
    """
    import torch

    half = vae.config.latent_channels
    conv = vae.quant_conv
    images = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 5)) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(images).latent_dist.mean
        conv.weight[:half].mul_(mean_std / float(mean.std()))
        conv.bias[:half].mul_(mean_std / float(mean.std()))
        conv.weight[half:].mul_(0.1)
        conv.bias[half:].fill_(log_var)


def _strengthen_encoder(encoder, seed: int) -> None:
    """Make the EEG and the subject token move the embedding, as a trained encoder does.

    At init the conv head's biases dwarf its input (two different trials give embeddings with cosine
    0.97) and the soft attention hardly mixes tokens (noise of std 0.1 on the EEG moves the
    embedding by 1-cos 4e-3). So: sharpen the attention and strengthen its values; calibrate both
    BatchNorms' running statistics on synthetic EEG of every subject id, as training would, which
    also gives them non-trivial values.
    """
    import torch

    attention = encoder.encoder.encoder.attn_layers[0].attention
    table = encoder.encoder.enc_embedding.subject_embedding
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        table.subject_embedding.weight.normal_(0.0, 1.0, generator=generator)
        table.shared_embedding.normal_(0.0, 1.0, generator=generator)
        attention.query_projection.weight.mul_(10.0)
        attention.key_projection.weight.mul_(10.0)
        attention.value_projection.weight.mul_(4.0)
    eeg = torch.from_numpy(synthetic_eeg(64, seed + 1))
    ids = torch.arange(len(eeg)) % (encoder.num_subjects + 2)  # every row and the shared token
    tsconv = encoder.enc_eeg[0].tsconv
    calibrate_batchnorms(encoder, (eeg, ids), (tsconv[2], tsconv[5]))


def strengthen_prior(prior, cond_scale: float = 4.0, output_scale: float = 0.5) -> None:
    """The condition enters through small Linears; scale them so guidance visibly moves the output.

    The sampler clips its x0 prediction to [-1, 1]; a smaller output layer keeps more of the final
    embedding inside the range, where the condition can still move it.
    """
    import torch

    with torch.no_grad():
        for layers in (prior.encode_cond_embedding, prior.decode_cond_embedding):
            for lin in layers:
                lin.weight.mul_(cond_scale)
        prior.output_layer.weight.mul_(output_scale)
        prior.output_layer.bias.mul_(output_scale)


def tiny_low_level_encoder(latent_side: int, seed: int):
    """The refactor's layout with narrow layers: Linear(250 -> 2), one stride-2 block per doubling.

    Its BatchNorm statistics are calibrated on synthetic EEG, as training would leave them, and its
    output is scaled to the spread of real unscaled SDXL latents (std ~5), so the EEG moves the start
    image of Stage II by far more than any parity tolerance.
    """
    import torch

    from .models.low_level_encoder import LowLevelArchitecture, LowLevelEncoder

    blocks = int(np.log2(latent_side))
    if 2**blocks != latent_side:
        raise OptionError(f"--image-size / 8 must be a power of two for the tiny low-level encoder, got {latent_side}")
    torch.manual_seed(seed + 7)
    arch = LowLevelArchitecture(generation="refactor", linear_features=2, widths=(16,) * blocks, head=())
    model = LowLevelEncoder(arch)
    bns = [m for m in model.upsampler if isinstance(m, torch.nn.BatchNorm2d)]
    calibrate_batchnorms(model, torch.from_numpy(synthetic_eeg(64, seed + 2)), bns)
    with torch.no_grad():
        eeg = torch.from_numpy(synthetic_eeg(64, seed + 3))
        last = [m for m in model.upsampler if isinstance(m, torch.nn.ConvTranspose2d)][-1]  # the 1x1 conv to latents
        out = model.eval()(eeg)
        gain = 5.0 / float(out.std())
        last.weight.mul_(gain)
        if last.bias is not None:
            last.bias.copy_(last.bias * gain - (out.mean(dim=(0, 2, 3)) * gain))  # centred per channel
    return model


def _write_brainflora(folder: Path, seed: int) -> None:
    """BrainFLORA's checkpoint (all towers; the EEG tower's BatchNorms calibrated on synthetic EEG) and its prior."""
    import torch

    from .models.diffusion_prior import DiffusionPriorUNet
    from .tiny_brainflora import CHECKPOINT, PRIOR, other_towers_state, tiny_brainflora_encoder

    model = tiny_brainflora_encoder(seed)
    tsconv = model.encoder["eeg"].enc_eeg[0].tsconv
    eeg = torch.from_numpy(synthetic_eeg(16, seed + 4))
    calibrate_batchnorms(model, (eeg, torch.zeros(len(eeg), dtype=torch.int64)), (tsconv[2], tsconv[5]))
    (folder / PRIOR).parent.mkdir(parents=True, exist_ok=True)
    torch.save({**model.state_dict(), **other_towers_state()}, folder / CHECKPOINT)
    torch.manual_seed(seed + 12)
    prior = DiffusionPriorUNet()
    strengthen_prior(prior)
    torch.save(prior.state_dict(), folder / PRIOR)


def calibrate_batchnorms(model, inputs, bns) -> None:
    """Set each BatchNorm's running statistics to those of its input on ``inputs``, in order."""
    import torch

    was_training = model.training
    model.eval()
    for bn in bns:  # in order: each later one sees the earlier ones' calibrated output
        seen: list[torch.Tensor] = []
        hook = bn.register_forward_hook(lambda _m, args, _o, seen=seen: seen.append(args[0]))
        with torch.no_grad():
            model(*inputs) if isinstance(inputs, tuple) else model(inputs)
        hook.remove()
        bn.running_mean.copy_(seen[0].mean(dim=(0, 2, 3)))
        bn.running_var.copy_(seen[0].var(dim=(0, 2, 3)))
        bn.num_batches_tracked.fill_(1000)
    model.train(was_training)


def synthetic_eeg(n_trials: int, seed: int) -> np.ndarray:
    """Whitened-looking trials (unit-variance noise) with an evoked response around 100-200 ms."""
    rng = np.random.default_rng(seed)
    t = np.arange(250) / 250.0
    evoked = np.exp(-(((t - 0.15) / 0.04) ** 2)) * rng.normal(0, 2.0, size=(len(CHANNELS_63), 1))
    return (rng.normal(0, 1.0, size=(n_trials, len(CHANNELS_63), 250)) + evoked).astype(np.float32)


RECORDING = "recording_raw.fif"  # 63 channels at 500 Hz, 6 annotated stimuli: for raw `infer` and `stream --replay`


def _write_recording(path: Path, seed: int) -> None:
    try:
        import mne  # noqa: F401
    except ImportError:
        log.warning("mne is not installed (pip install 'eeg2img-deploy[eeg]'): no %s written", path.name)
        return
    from .eeg.synthetic import write_tiny_recording

    write_tiny_recording(path, n_stimuli=6, soa_s=0.5, sfreq=500.0, seed=seed)


def init_tiny(out_dir: str | Path, *, seed: int = 0, n_trials: int = 4, image_size: int = 512,
              overwrite: bool = False) -> WeightsLayout:
    """Write the tiny weights folder; returns its resolved layout.

    ``image_size``: the images the low-level encoder's latents decode to (its output size is fixed by
    its layer count, as in the paper's, whose 64x64 latents are 512x512 images). A folder that holds
    anything is refused unless ``overwrite`` (it could be someone's real weights).
    """
    held = sorted(p.name for p in Path(out_dir).iterdir()) if Path(out_dir).is_dir() else []
    if held and not overwrite:
        from .errors import OptionError

        raise OptionError(f"{out_dir} is not empty (it holds {', '.join(held[:3])}{', ...' if len(held) > 3 else ''}): "
                          "pass --overwrite to write the tiny set over it, or name a new folder")
    import torch
    from safetensors.torch import save_file

    with quiet(TORCHVISION_FALLBACK):
        from diffusers import EulerAncestralDiscreteScheduler
        # the class itself: diffusers' top-level name is a lazy alias that mypy reads as its torch-less dummy
        from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from .models.atm_encoder import ATMEncoder
    from .models.diffusion_prior import DiffusionPriorUNet

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = _tokenizer(), _tokenizer()
    config = _text_config(len(tokenizer))
    pipe = StableDiffusionXLPipeline(
        vae=tiny_vae(), text_encoder=CLIPTextModel(config), text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=tiny_unet(),
        scheduler=EulerAncestralDiscreteScheduler.from_config(SDXL_TURBO_SCHEDULER),
    )
    taesd = tiny_taesd()
    _strengthen_stage2(pipe, taesd, gen)
    _sharpen_vae_posterior(pipe.vae, seed)
    from .tiny_semantic import strengthen_text_path, write_semantic

    strengthen_text_path(pipe)
    with quiet(bars=True):
        pipe.save_pretrained(out / "sdxl-turbo", safe_serialization=True)
    ip_dir = out / "ip-adapter" / "sdxl_models"
    ip_dir.mkdir(parents=True, exist_ok=True)
    save_file(ip_adapter_state_dict(pipe.unet, gen), str(ip_dir / "ip-adapter_sdxl_vit-h.safetensors"))

    _save_taesd(taesd, out / "taesdxl")

    encoder = ATMEncoder(num_subjects=10, num_subject_linears=2)
    _strengthen_encoder(encoder, seed)
    (out / "encoder").mkdir(exist_ok=True)
    torch.save(encoder.state_dict(), out / "encoder" / "atms_sub-08.pth")

    prior = DiffusionPriorUNet()
    strengthen_prior(prior)
    (out / "prior").mkdir(exist_ok=True)
    torch.save(prior.state_dict(), out / "prior" / "diffusion_prior.pt")

    low_level = tiny_low_level_encoder(image_size // 8, seed)
    (out / "low-level").mkdir(exist_ok=True)
    torch.save(low_level.state_dict(), out / "low-level" / "best_encoder.pth")
    with quiet(bars=True):
        write_semantic(out, seed)  # GIT captioner and PixelProjector
    _write_brainflora(out / "brainflora", seed)  # BrainFLORA's UnifiedEncoder and prior, in their own layout

    (out / "eeg").mkdir(exist_ok=True)
    np.save(out / "eeg" / "synthetic_eeg.npy", synthetic_eeg(n_trials, seed))
    _write_recording(out / "eeg" / RECORDING, seed)
    from .tiny_eval import write_eval_set

    write_eval_set(out, n_trials, seed)  # eval/: truth images, metric networks, image features
    (out / "README.txt").write_text(
        "Tiny model set written by `eeg2img-deploy init-tiny`: random weights in the real formats.\n"
        "Images made from it are noise; it exists to run and test every command.\n",
        encoding="utf-8",
    )
    log.info("wrote the tiny model set to %s", out)
    return resolve_weights(out)
