"""Load checkpoints trained with the official CRIS code (DerrickWang005/CRIS.pytorch) into our CRIS.

The official ``train.py`` saves ``{"epoch", "cur_iou", "best_iou", "prec", "state_dict", "optimizer",
"scheduler"}`` where ``state_dict`` is that of the DDP-wrapped model (keys prefixed ``module.``).
Key mapping, official -> ours (after dropping ``module.``); everything not listed is identical:

==========================================  ==========================================
official                                    ours
==========================================  ==========================================
``backbone.*`` (OpenAI CLIP names)          ``backbone.*`` (same names, incl. ``visual.attnpool.connect``)
``neck.txt_proj.*``                         ``neck.sentence_proj.*``
``neck.f1_v_proj.*``                        ``neck.v5_proj.*``
``neck.norm_layer.*``                       ``neck.f5_norm.*``
``neck.f2_v_proj.*`` / ``neck.f2_cat.*``    ``neck.v4_proj.*`` / ``neck.f4_fuse.*``
``neck.f3_v_proj.*`` / ``neck.f3_cat.*``    ``neck.v3_proj.*`` / ``neck.f3_fuse.*``
``neck.f4_proj5|4|3.*``                     ``neck.out5|4|3.*``
``neck.aggr.*``                             ``neck.aggregate.*``
``neck.coordconv.0.conv1.*``                ``neck.coord_conv.*``
``neck.coordconv.1.*``                      ``neck.out_conv.*``
``decoder.layers.i.multihead_attn.*``       ``decoder.layers.i.cross_attn.*``
``...attn.in_proj_weight`` (3D, D)          ``...attn.{q,k,v}_proj.weight`` (D, D) each, in that order
``...attn.in_proj_bias`` (3D,)              ``...attn.{q,k,v}_proj.bias``
``proj.vis.*``                              ``projector.vis.*``
``proj.txt.*``                              ``projector.dynamic_kernel.*``
==========================================  ==========================================

(``...attn`` is ``self_attn`` or ``multihead_attn``/``cross_attn``; ``out_proj`` keeps its name.)
"""

from __future__ import annotations

import collections
import os
import re

import torch

# (official prefix, our prefix), applied to the start of a key (after "module." is dropped).
PREFIXES = [
    ("neck.txt_proj.", "neck.sentence_proj."),
    ("neck.f1_v_proj.", "neck.v5_proj."),
    ("neck.norm_layer.", "neck.f5_norm."),
    ("neck.f2_v_proj.", "neck.v4_proj."),
    ("neck.f2_cat.", "neck.f4_fuse."),
    ("neck.f3_v_proj.", "neck.v3_proj."),
    ("neck.f3_cat.", "neck.f3_fuse."),
    ("neck.f4_proj5.", "neck.out5."),
    ("neck.f4_proj4.", "neck.out4."),
    ("neck.f4_proj3.", "neck.out3."),
    ("neck.aggr.", "neck.aggregate."),
    ("neck.coordconv.0.conv1.", "neck.coord_conv."),
    ("neck.coordconv.1.", "neck.out_conv."),
    ("proj.vis.", "projector.vis."),
    ("proj.txt.", "projector.dynamic_kernel."),
]
_PACKED = re.compile(r"^(decoder\.layers\.\d+\.)(self_attn|multihead_attn)\.in_proj_(weight|bias)$")
_OURS_QKV = re.compile(r"^(decoder\.layers\.\d+\.)(self_attn|cross_attn)\.([qkv])_proj\.(weight|bias)$")


def _rename(key: str, pairs) -> str:
    for a, b in pairs:
        if key.startswith(a):
            return b + key[len(a) :]
    return key


def official_to_ours(state_dict: dict) -> dict:
    """Official CRIS state dict (with or without ``module.``) -> ours (see the module docstring)."""
    out = {}
    for key, value in state_dict.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        m = _PACKED.match(key)
        if m:
            prefix, attn, kind = m.groups()
            attn = "cross_attn" if attn == "multihead_attn" else attn
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                out[f"{prefix}{attn}.{name}_proj.{kind}"] = part.clone()
            continue
        key = key.replace(".multihead_attn.", ".cross_attn.") if key.startswith("decoder.") else key
        out[_rename(key, PREFIXES)] = value
    return out


def ours_to_official(state_dict: dict, module_prefix: bool = True) -> dict:
    """Inverse of :func:`official_to_ours`; with ``module_prefix`` keys start with ``module.`` as in the
    official DDP checkpoints."""
    out, packed = {}, collections.defaultdict(dict)
    inverse = [(b, a) for a, b in PREFIXES]
    for key, value in state_dict.items():
        m = _OURS_QKV.match(key)
        if m:
            prefix, attn, name, kind = m.groups()
            attn = "multihead_attn" if attn == "cross_attn" else attn
            packed[f"{prefix}{attn}.in_proj_{kind}"][name] = value
            continue
        key = key.replace(".cross_attn.", ".multihead_attn.") if key.startswith("decoder.") else key
        out[_rename(key, inverse)] = value
    for key, parts in packed.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"{key}: need q, k and v projections, got {sorted(parts)}")
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    if module_prefix:
        out = {"module." + k: v for k, v in out.items()}
    return out


def read_official_state_dict(path: str | os.PathLike) -> dict:
    """The model state dict of an official checkpoint file (``torch.load(weights_only=True)``; the
    scheduler's ``collections.Counter`` of milestones is allowed)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"official CRIS checkpoint {str(path)!r}: no such file")
    try:
        with torch.serialization.safe_globals([collections.Counter]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        from refseg_core.safe_load import describe_load_error

        raise ValueError(
            f"official CRIS checkpoint {str(path)!r}: cannot be read safely ({describe_load_error(e)})"
        ) from None
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"official CRIS checkpoint {str(path)!r}: no state dict inside")
    return sd


def load_official_checkpoint(path_or_sd, arch: str = "RN50", word_len: int = 17, **overrides):
    """Build ``cris_r50`` / ``cris_r101`` and load an official checkpoint (a path or its state dict).

    The model is returned in eval mode. A checkpoint of the other backbone, or any key that does not map,
    raises ``ValueError`` naming the checkpoint and the keys.
    """
    from refseg_core.models.cris import cris_r50, cris_r101

    builders = {"RN50": cris_r50, "RN101": cris_r101}
    if arch not in builders:
        raise ValueError(f"arch must be RN50 or RN101, got {arch!r}")
    where = "<state dict>" if isinstance(path_or_sd, dict) else str(path_or_sd)
    sd = path_or_sd if isinstance(path_or_sd, dict) else read_official_state_dict(path_or_sd)
    model = builders[arch](word_len=word_len, **overrides)
    try:
        missing, unexpected = model.load_state_dict(official_to_ours(sd), strict=False)
    except RuntimeError as e:
        raise ValueError(f"official CRIS checkpoint {where} does not fit arch={arch}: {e}") from e
    if missing or unexpected:
        raise ValueError(
            f"official CRIS checkpoint {where} does not fit arch={arch}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval()
