"""CLIP ResNet + text transformer adapted for dense prediction (CRIS, Sec. 3.1 "Image & Text Encoder").

Over 350 lines on purpose: the dense image read-out and the per-word text read-out of one CLIP model, with
the loading of its weights, belong together (one file per paper part).

CRIS keeps OpenAI's CLIP weights but needs *maps*, not one embedding per image, and *one state per
word*, not one per sentence. This module wraps open_clip's modules (``ModifiedResNet`` and the text
``Transformer``) and changes only how they are read out:

Image (``encode_image``), for an input ``(B, 3, H, W)`` with ``H`` and ``W`` divisible by 32:

* ``v3`` = layer2 output ``(B, 8w, H/8, W/8)``   (RN50/RN101: 512 channels, 52x52 at 416);
* ``v4`` = layer3 output ``(B, 16w, H/16, W/16)`` (1024 channels, 26x26 at 416);
* ``v5`` = the attention pool made *dense* ``(B, E, H/32, W/32)`` (E = 1024 RN50, 512 RN101, 13x13):
  every pixel is a query (no class token), the positional embedding (learned at 7x7) is resized
  bicubically to ``(H/32, W/32)``, and a new residual branch ``Conv1x1(32w -> E) + BN`` is added
  before a ReLU. The branch is ``visual.attnpool.connect`` (the official code's name), randomly
  initialised even when CLIP weights are loaded.

Text (``encode_text``), for tokens ``(B, L)`` with padding id 0 and EOT = the row's largest id:

* ``words`` ``(B, L, Dw)``: per-token ``ln_final`` states, *not* projected (Dw = 512);
* ``state`` ``(B, E)``: the EOT state through ``text_projection`` (the CLIP sentence embedding);
* ``pad_mask`` ``(B, L)`` bool, True at padding (token id 0), for the decoder's cross-attention.

The causal mask and positional embedding are cut to ``L`` (``word_len``: 17 for RefCOCO, 22 for G-Ref),
as in the official code. The full CLIP (including ``logit_scale``, the 77-token text positional
embedding and the 7x7 attention-pool positional embedding) is kept so that parameter names and counts
match OpenAI's / the official CRIS checkpoints; ``logit_scale``, which no forward here reads, is the one
parameter that does not train (``requires_grad=False``). The backbone's ``state_dict`` keys are OpenAI's
(``visual.layer1.0.conv1.weight``, ``transformer.resblocks.0.attn.in_proj_weight``, ...) plus
``visual.attnpool.connect.*``.

Activations are QuickGELU in the text transformer, as in OpenAI's weights.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Widths of the tiny configuration (CPU smoke runs). Keys are the ``**tiny_widths`` accepted by
# :func:`build_clip_backbone`.
TINY_DEFAULTS = dict(
    vision_layers=(1, 1, 1, 1),  # Bottleneck blocks per ResNet stage
    vision_width=16,  # stem width w: v3 = 8w, v4 = 16w channels, layer4 = 32w channels
    embed_dim=128,  # E: v5 channels and the sentence-state size
    text_width=64,  # Dw: per-word state size
    text_layers=2,
    text_heads=4,
)

OPENCLIP_ARCHS = {"RN50": "RN50", "RN101": "RN101"}


def clip_config(arch: str = "RN50", **tiny_widths) -> dict:
    """Keyword arguments of ``open_clip.model.CLIP`` for ``arch`` in ``RN50``, ``RN101``, ``tiny``.

    ``tiny_widths`` (keys of :data:`TINY_DEFAULTS`) apply to ``tiny`` only.
    """
    import open_clip

    if arch in OPENCLIP_ARCHS:
        if tiny_widths:
            raise ValueError(f"arch={arch!r} takes no width overrides, got {sorted(tiny_widths)}")
        cfg = copy.deepcopy(open_clip.get_model_config(OPENCLIP_ARCHS[arch]))
        return dict(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"])
    if arch != "tiny":
        raise ValueError(f"unknown CLIP arch {arch!r}; valid: RN50, RN101, tiny")
    unknown = set(tiny_widths) - set(TINY_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown tiny width keys {sorted(unknown)}; valid: {sorted(TINY_DEFAULTS)}")
    w = {**TINY_DEFAULTS, **tiny_widths}
    if w["text_width"] % w["text_heads"]:
        raise ValueError(f"text_width={w['text_width']} must be divisible by text_heads={w['text_heads']}")
    vision_cfg = dict(
        image_size=224,
        layers=tuple(w["vision_layers"]),
        width=w["vision_width"],
        patch_size=None,
        head_width=min(64, w["vision_width"] * 32),
    )
    text_cfg = dict(
        context_length=77,
        vocab_size=49408,
        width=w["text_width"],
        heads=w["text_heads"],
        layers=w["text_layers"],
    )
    return dict(embed_dim=w["embed_dim"], vision_cfg=vision_cfg, text_cfg=text_cfg)


def read_clip_state_dict(path: str | os.PathLike) -> dict:
    """Read a CLIP state dict from ``path``: an open_clip checkpoint (a state dict, or a dict with
    ``state_dict``, ``module.`` prefixes removed) or an OpenAI TorchScript file (``RN50.pt``).

    Nothing in the file is executed: checkpoints load with ``weights_only=True``, and a TorchScript
    archive is never handed to TorchScript's own loader (which runs the archive's code); only its
    tensors are read, by :func:`read_torchscript_tensors`.
    """
    from open_clip.factory import load_state_dict

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"pretrained={str(path)!r} is a directory, not a weights file")
    if not p.is_file():
        raise FileNotFoundError(f"pretrained={str(path)!r}: no such file")
    if _is_torchscript_archive(p):
        sd = read_torchscript_tensors(p)
    else:
        try:
            sd = load_state_dict(str(p), weights_only=True)
        except Exception as exc:  # noqa: BLE001 - truncated, not a checkpoint, or unsafe content
            from refseg_core.safe_load import describe_load_error

            raise ValueError(
                f"pretrained={str(path)!r}: not a readable CLIP checkpoint ({describe_load_error(exc)})"
            ) from None
    sd = {k: v for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    return sd


def _is_torchscript_archive(path: Path) -> bool:
    """A zip whose records include ``<root>/code/`` or ``<root>/constants.pkl`` (TorchScript's layout)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for a TorchScript class (``__torch__.*``) while unpickling: it only keeps its state."""

    def __init__(self, *args):
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _TensorOnlyUnpickler:
    """Unpickles a TorchScript ``data.pkl`` allowing nothing but plain containers, stand-ins for the
    script classes, storages (read from the archive's ``data/`` records) and tensors rebuilt from them.
    Any other global is refused, so no function named in the file is ever called."""

    def __init__(self, zf, root: str, path: Path):
        import pickle

        self.zf, self.root, self.path = zf, root, path
        outer = self

        class U(pickle.Unpickler):
            def find_class(self, module, name):
                if module == "__torch__" or module.startswith("__torch__."):
                    return _ScriptObject
                if module == "torch" and name in _STORAGE_DTYPES:
                    return _STORAGE_DTYPES[name]
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return _rebuild_tensor
                if (module, name) == ("collections", "OrderedDict"):
                    import collections

                    return collections.OrderedDict
                raise pickle.UnpicklingError(
                    f"{outer.path} refers to {module}.{name}, which a weights file "
                    "has no reason to hold; refusing to read it"
                )

            def persistent_load(self, pid):
                if not (
                    isinstance(pid, tuple)
                    and len(pid) == 5
                    and pid[0] == "storage"
                    and isinstance(pid[1], torch.dtype)
                ):
                    raise pickle.UnpicklingError(f"{outer.path}: unexpected storage record {pid!r}")
                _, dtype, key, _location, numel = pid
                data = bytearray(outer.zf.read(f"{outer.root}/data/{key}"))
                flat = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
                if flat.numel() != int(numel):
                    raise pickle.UnpicklingError(
                        f"{outer.path}: storage {key} holds {flat.numel()} values, expected {numel}"
                    )
                return flat

        self.unpickler_class = U

    def load(self, data: bytes):
        import io

        return self.unpickler_class(io.BytesIO(data)).load()


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset)).clone()


def read_torchscript_tensors(path: str | os.PathLike) -> dict:
    """The parameters and buffers of a TorchScript archive (OpenAI's ``RN50.pt``), keyed as
    ``state_dict()`` would key them, read **without executing** anything in the archive.

    The archive's ``data.pkl`` is unpickled by :class:`_TensorOnlyUnpickler`; the module tree it
    describes is walked and every tensor attribute is collected under its dotted name. OpenAI's
    non-persistent ``attn_mask`` tensors are left out (CLIP rebuilds them).
    """
    import pickle
    import zipfile

    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise ValueError("no single <root>/data.pkl record")
            root = pkl[0].split("/", 1)[0]
            obj = _TensorOnlyUnpickler(zf, root, p).load(zf.read(pkl[0]))
    except (pickle.UnpicklingError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(
            f"pretrained={str(path)!r}: a TorchScript archive whose weights cannot be read safely ({exc})"
        ) from exc
    sd: dict = {}

    def walk(o, prefix):
        state = o.state if isinstance(o, _ScriptObject) else None
        if not isinstance(state, dict):
            return
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "attn_mask":
                sd[prefix + k] = v
            elif isinstance(v, _ScriptObject):
                walk(v, f"{prefix}{k}.")

    walk(obj, "")
    if not sd:
        raise ValueError(f"pretrained={str(path)!r}: a TorchScript archive holding no tensors")
    return sd


class DenseClipBackbone(nn.Module):
    """CLIP image and text encoders read out densely (see the module docstring).

    Build with :func:`build_clip_backbone`. Attributes: ``vision_channels`` = (C3, C4, C5),
    ``word_dim`` = Dw, ``state_dim`` = E, ``word_len`` = the default token length.
    """

    def __init__(self, clip: nn.Module, word_len: int = 17):
        super().__init__()
        # Take open_clip's modules over under OpenAI's names (so state dicts line up with OpenAI
        # checkpoints and the official CRIS code).
        self.visual = clip.visual
        self.transformer = clip.transformer
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        # Kept so that names and counts match CLIP's, but frozen: no forward here reads it (CRIS has no
        # image-text logits), so its gradient would always be None. The official code leaves it
        # trainable and Adam skips it (grad None), so freezing it changes no number; it keeps DDP from
        # waiting for a gradient that never comes (official CRIS.pytorch train.py pays for that with
        # find_unused_parameters=True).
        self.logit_scale = clip.logit_scale
        self.logit_scale.requires_grad_(False)

        pool = self.visual.attnpool
        c_in, c_out = pool.c_proj.in_features, pool.c_proj.out_features
        # The residual branch CRIS adds to the dense attention pool (new, randomly initialised).
        pool.connect = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

        ctx = self.positional_embedding.shape[0]
        if not 1 <= word_len <= ctx:
            raise ValueError(f"word_len={word_len} must be in [1, {ctx}] (CLIP's context length)")
        self.word_len = int(word_len)
        # Additive causal mask: position i sees positions <= i (CLIP's text transformer is causal).
        self.register_buffer("attn_mask", torch.full((ctx, ctx), float("-inf")).triu_(1), persistent=False)

        width = self.visual.layer1[0].conv1.in_channels  # w
        self.vision_channels = (width * 8, width * 16, c_out)
        self.word_dim = self.ln_final.normalized_shape[0]
        self.state_dim = self.text_projection.shape[1]

    # ------------------------------------------------------------------ image
    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W) -> (v3 (B, C3, H/8, W/8), v4 (B, C4, H/16, W/16), v5 (B, E, H/32, W/32))``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(
                f"images height and width must be divisible by 32 (CLIP ResNet stride), got {h}x{w}"
            )
        vis = self.visual
        x = vis.stem(images.to(vis.conv1.weight.dtype))
        x = vis.layer1(x)
        v3 = vis.layer2(x)
        v4 = vis.layer3(v3)
        v5 = self.dense_attention_pool(vis.layer4(v4))
        return v3, v4, v5

    def dense_attention_pool(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP's attention pool applied at every pixel: ``(B, 32w, h, w) -> (B, E, h, w)``.

        Multi-head self-attention over the ``h*w`` pixels (plus the resized positional embedding,
        no class token), output projection ``c_proj``, plus ``connect(x)``, then ReLU.
        """
        pool = self.visual.attnpool
        b, c, h, w = x.shape
        res = pool.connect(x)
        pos = pool.positional_embedding[1:]  # drop the class-token position: (S*S, C)
        s = int(round(pos.shape[0] ** 0.5))
        pos = pos.t().reshape(1, c, s, s)
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        t = (x + pos.to(x.dtype)).flatten(2).transpose(1, 2)  # (B, hw, C)
        heads = pool.num_heads

        def split(z):  # (B, hw, C) -> (B, heads, hw, C/heads)
            return z.reshape(b, h * w, heads, c // heads).transpose(1, 2)

        o = F.scaled_dot_product_attention(
            split(pool.q_proj(t)), split(pool.k_proj(t)), split(pool.v_proj(t))
        )
        o = pool.c_proj(o.transpose(1, 2).reshape(b, h * w, c))  # (B, hw, E)
        o = o.transpose(1, 2).reshape(b, -1, h, w)
        return F.relu(o + res)

    # ------------------------------------------------------------------- text
    def encode_text(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``tokens (B, L) -> (words (B, L, Dw), state (B, E), pad_mask (B, L) bool)``.

        The sentence ``state`` is read at the EOT token, the largest id of each row (as in CLIP).
        """
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be (B, L), got {tuple(tokens.shape)}")
        L = tokens.shape[1]
        ctx = self.positional_embedding.shape[0]
        if L > ctx:
            raise ValueError(f"tokens have length {L}, more than CLIP's context length {ctx}")
        dtype = self.transformer.get_cast_dtype()
        x = self.token_embedding(tokens).to(dtype) + self.positional_embedding[:L].to(dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:L, :L].to(dtype))
        words = self.ln_final(x)  # (B, L, Dw)
        eot = words[torch.arange(words.shape[0], device=words.device), tokens.argmax(dim=-1)]
        state = eot @ self.text_projection  # (B, E)
        return words, state, tokens == 0

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        """Both encoders: ``((v3, v4, v5), (words, state, pad_mask))``."""
        return self.encode_image(images), self.encode_text(tokens)


def build_clip_backbone(
    arch: str = "RN50", pretrained: str | os.PathLike | None = None, word_len: int = 17, **tiny_widths
) -> DenseClipBackbone:
    """Build the dense CLIP backbone.

    Args:
        arch: ``"RN50"``, ``"RN101"`` or ``"tiny"`` (small widths for CPU runs, see :data:`TINY_DEFAULTS`).
        pretrained: ``None`` (random init, no download), ``"openai"`` (open_clip downloads OpenAI's
            weights; RN50/RN101 only), or a local file readable by :func:`read_clip_state_dict`.
            The new ``connect`` branch stays randomly initialised in every case.
        word_len: default token length (checked against CLIP's context length 77).
        **tiny_widths: overrides of :data:`TINY_DEFAULTS` (``arch="tiny"`` only).
    """
    import open_clip

    cfg = clip_config(arch, **tiny_widths)
    if pretrained == "openai":
        if arch not in OPENCLIP_ARCHS:
            raise ValueError(f"pretrained='openai' exists for RN50 and RN101, not arch={arch!r}")
        clip = open_clip.create_model(OPENCLIP_ARCHS[arch], pretrained="openai", force_quick_gelu=True)
    else:
        clip = open_clip.model.CLIP(**cfg, quick_gelu=True)
        if pretrained is not None:
            sd = read_clip_state_dict(pretrained)
            try:
                missing, unexpected = clip.load_state_dict(sd, strict=False)
            except RuntimeError as e:  # shape mismatch: another arch's weights
                raise ValueError(f"pretrained={str(pretrained)!r} does not fit CLIP {arch}: {e}") from e
            if missing or unexpected:
                raise ValueError(
                    f"pretrained={str(pretrained)!r} does not fit CLIP {arch}: "
                    f"missing {missing[:5]}..., unexpected {unexpected[:5]}..."
                )
    return DenseClipBackbone(clip.float(), word_len=word_len)
