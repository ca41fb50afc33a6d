"""Numerical equivalence of refseg_core's CRIS with the official implementation (DerrickWang005/CRIS.pytorch).

Usage::

    python benchmarks/compare_official_cris.py --official-repo /path/to/CRIS.pytorch [--arch RN50]

The official code is imported from ``--official-repo`` at run time; none of it is part of this
repository. Steps:

1. build our ``cris_r50`` / ``cris_r101`` with random weights (seeded);
2. build the official ``CRIS(cfg)``: its constructor ``torch.jit.load``-s an OpenAI CLIP file, so that call
   is answered (for the duration of the build only) with our backbone's CLIP weights, which carry
   OpenAI's names;
3. copy all our weights into it through :func:`refseg_core.models.cris_official.ours_to_official`
   (``strict=True``), and check the inverse mapping recovers every tensor;
4. feed both the same images and tokens in eval mode and compare the logits; also compare parameter
   counts per part and our CLIP tokens with the official tokenizer's.

Writes ``refseg_core/evidence/cris_equivalence_<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import json
import platform
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refseg_core.io import atomic_path  # noqa: E402
from refseg_core.models.cris import cris_r50, cris_r101  # noqa: E402
from refseg_core.models.cris_official import official_to_ours, ours_to_official  # noqa: E402

EXPRESSIONS = [
    "the man on the left in a red shirt holding a black umbrella next to the parked car by the road",
    "dog",
]
OFFICIAL_CFG = {  # official config/refcoco/cris_r50.yaml and cris_r101.yaml (TRAIN section)
    "RN50": dict(
        word_len=17,
        word_dim=1024,
        vis_dim=512,
        fpn_in=[512, 1024, 1024],
        fpn_out=[256, 512, 1024],
        num_layers=3,
        num_head=8,
        dim_ffn=2048,
        dropout=0.1,
        intermediate=False,
    ),
    "RN101": dict(
        word_len=17,
        word_dim=512,
        vis_dim=512,
        fpn_in=[512, 1024, 512],
        fpn_out=[256, 512, 1024],
        num_layers=3,
        num_head=8,
        dim_ffn=2048,
        dropout=0.1,
        intermediate=False,
    ),
}


def _import_official(repo: Path):
    """Import the official ``model`` package; ``loguru`` (used only by its ``build_segmenter``) is stubbed
    when it is not installed."""
    if not (repo / "model" / "segmenter.py").is_file():
        sys.exit(f"--official-repo {repo}: no model/segmenter.py there (expected a CRIS.pytorch checkout)")
    if importlib.util.find_spec("loguru") is None:
        stub = types.ModuleType("loguru")
        stub.logger = types.SimpleNamespace(info=print, catch=lambda f: f)
        sys.modules["loguru"] = stub
    sys.path.insert(0, str(repo))
    segmenter = importlib.import_module("model.segmenter")
    return segmenter


@contextlib.contextmanager
def _jit_load_returns(state_dict: dict):
    """Answer ``torch.jit.load(...)`` with an object whose ``state_dict()`` is ``state_dict``."""

    class _FakeJit:
        def eval(self):
            return self

        def state_dict(self):
            return {k: v.clone() for k, v in state_dict.items()}

    real = torch.jit.load
    torch.jit.load = lambda *a, **k: _FakeJit()
    try:
        yield
    finally:
        torch.jit.load = real


def _randomize_norms(model: torch.nn.Module, seed: int) -> None:
    """Random BatchNorm / LayerNorm affine parameters and running statistics, so that no layer is an
    identity at random init (CLIP zero-initialises every bn3 weight) and the comparison exercises all."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _official_tokens(repo: Path, texts, word_len):
    spec = importlib.util.spec_from_file_location(
        "official_simple_tokenizer", repo / "utils" / "simple_tokenizer.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tok = mod.SimpleTokenizer()
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), word_len, dtype=torch.long)
    for i, t in enumerate(texts):  # the official tokenize(..., truncate=True)
        ids = [sot] + tok.encode(t) + [eot]
        if len(ids) > word_len:
            ids = ids[:word_len]
            ids[-1] = eot
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official-repo", type=Path, help="a checkout of DerrickWang005/CRIS.pytorch")
    ap.add_argument("--arch", choices=["RN50", "RN101"], default="RN50")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--official-commit", default=None, help="recorded in the JSON when the checkout has no .git"
    )
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default refseg_core/evidence/...)")
    args = ap.parse_args(argv)
    if args.official_repo is None:
        ap.exit(
            2,
            "compare_official_cris.py: --official-repo PATH is required (a checkout of "
            "github.com/DerrickWang005/CRIS.pytorch); nothing was compared.\n",
        )
    repo = args.official_repo.resolve()
    segmenter = _import_official(repo)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    ours = (cris_r50 if args.arch == "RN50" else cris_r101)().eval()
    _randomize_norms(ours, args.seed)
    clip_sd = {k: v for k, v in ours.backbone.state_dict().items() if ".attnpool.connect." not in k}
    cfg = types.SimpleNamespace(clip_pretrain="<our random CLIP weights>", **OFFICIAL_CFG[args.arch])
    with _jit_load_returns(clip_sd):
        official = segmenter.CRIS(cfg).eval()

    ours_sd = ours.state_dict()
    mapped = ours_to_official(ours_sd, module_prefix=False)
    official.load_state_dict(mapped, strict=True)
    back = official_to_ours({"module." + k: v for k, v in official.state_dict().items()})
    roundtrip_ok = set(back) == set(ours_sd) and all(torch.equal(back[k], ours_sd[k]) for k in ours_sd)

    ours, official = ours.to(device), official.to(device)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    texts = (EXPRESSIONS * args.batch)[: args.batch]
    tokens = ours.tokenizer(texts).to(device)
    try:
        tokens_match = bool(torch.equal(_official_tokens(repo, texts, cfg.word_len), tokens.cpu()))
    except Exception as e:  # noqa: BLE001 - the tokenizer comparison is a bonus, not the point
        tokens_match = f"not compared: {e}"
    with torch.no_grad():
        ref = official(images, tokens)
        got = ours(images, tokens)
        ref_words, ref_state = official.backbone.encode_text(tokens)
        got_words, got_state, _ = ours.backbone.encode_text(tokens)
        ref_vis = official.backbone.encode_image(images)
        got_vis = ours.backbone.encode_image(images)

    def diff(a, b):
        return float((a.float() - b.float()).abs().max())

    # Training mode with dropout off: batch-statistics BatchNorm, the loss and every gradient.
    for m in list(ours.modules()) + list(official.modules()):
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention) or hasattr(m, "q_proj") and hasattr(m, "dropout"):
            m.dropout = 0.0
    ours.train(), official.train()
    masks = (torch.rand(args.batch, 1, args.size, args.size, device=device) > 0.5).float()
    _, _, ref_loss = official(images, tokens, masks)
    ref_loss.backward()
    got_loss = ours.loss(images, tokens, masks)["loss"]
    got_loss.backward()
    grads = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    ref_grads = {k: p.grad for k, p in official.named_parameters() if p.grad is not None}
    mapped_grads = ours_to_official(grads, module_prefix=False)
    grad_diff = max(diff(mapped_grads[k], ref_grads[k]) for k in ref_grads)
    grad_scale = max(float(g.abs().max()) for g in ref_grads.values())
    # Per tensor: max |difference| relative to that tensor's largest gradient, floored at 1e-4 of the
    # largest gradient overall (some gradients are zero in exact arithmetic, e.g. a key bias under
    # softmax, and hold only rounding noise).
    floor = 1e-4 * grad_scale
    rel = sorted(
        (
            (diff(mapped_grads[k], ref_grads[k]) / max(float(ref_grads[k].abs().max()), floor), k)
            for k in ref_grads
        ),
        reverse=True,
    )

    result = dict(
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        torch=torch.__version__,
        python=platform.python_version(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        arch=args.arch,
        input_size=args.size,
        batch=args.batch,
        seed=args.seed,
        logits_shape=list(got.shape),
        max_abs_diff=diff(got, ref),
        max_abs_logit=float(ref.abs().max()),
        max_abs_v5=float(ref_vis[2].abs().max()),
        max_abs_diff_parts=dict(
            v3=diff(got_vis[0], ref_vis[0]),
            v4=diff(got_vis[1], ref_vis[1]),
            v5=diff(got_vis[2], ref_vis[2]),
            words=diff(got_words, ref_words),
            state=diff(got_state, ref_state),
        ),
        train_mode_no_dropout=dict(
            loss_ours=float(got_loss.detach()),
            loss_official=float(ref_loss.detach()),
            loss_abs_diff=abs(float(got_loss.detach()) - float(ref_loss.detach())),
            grads_compared=len(ref_grads),
            same_grad_keys=set(mapped_grads) == set(ref_grads),
            max_abs_grad_diff=grad_diff,
            max_abs_grad=grad_scale,
            worst_relative_grad_diff={k: r for r, k in rel[:3]},
            median_relative_grad_diff=rel[len(rel) // 2][0],
        ),
        params=dict(
            ours=dict(
                total=_count(ours),
                clip=_count(ours.backbone),
                fpn=_count(ours.neck),
                decoder=_count(ours.decoder),
                projector=_count(ours.projector),
            ),
            official=dict(
                total=_count(official),
                clip=_count(official.backbone),
                fpn=_count(official.neck),
                decoder=_count(official.decoder),
                projector=_count(official.proj),
            ),
        ),
        key_mapping_roundtrip=roundtrip_ok,
        tokens_match_official_tokenizer=tokens_match,
        official_repo_commit=args.official_commit or _git_head(repo),
    )
    name = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device).replace(" ", "_")
    suffix = "" if args.arch == "RN50" else f"_{args.arch.lower()}"  # RN50 keeps the name chapter 4 reads
    out = args.out or ROOT / "benchmarks" / "results" / f"cris_equivalence_{name}{suffix}.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def _git_head(repo: Path):
    head = repo / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (repo / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
