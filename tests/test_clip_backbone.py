"""The dense CLIP backbone (refseg_core/models/clip.py): shapes, equivalence with open_clip's own
text encoder and attention pool, loading a local checkpoint, bad input."""

import pytest
import torch
import torch.nn.functional as F

from refseg_core.models.clip import build_clip_backbone, clip_config


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_clip_backbone("tiny").eval()


def _tokens(rows, length=17):
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def test_image_shapes_any_size_divisible_by_32(tiny):
    for h, w in [(64, 64), (96, 160)]:
        v3, v4, v5 = tiny.encode_image(torch.randn(2, 3, h, w))
        assert v3.shape == (2, 128, h // 8, w // 8)
        assert v4.shape == (2, 256, h // 16, w // 16)
        assert v5.shape == (2, 128, h // 32, w // 32)
        assert (v5 >= 0).all()  # ReLU after the residual branch
    assert tiny.vision_channels == (128, 256, 128)


def test_image_size_not_divisible_by_32_is_refused(tiny):
    with pytest.raises(ValueError, match="divisible by 32"):
        tiny.encode_image(torch.randn(1, 3, 100, 96))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny.encode_image(torch.randn(1, 1, 64, 64))


def test_text_shapes_pad_mask_and_state_read_at_eot(tiny):
    tok = _tokens([[49406, 320, 1929, 49407], [49406, 49407]])
    words, state, pad = tiny.encode_text(tok)
    assert words.shape == (2, 17, 64) and state.shape == (2, 128) and pad.dtype == torch.bool
    assert pad.tolist() == (tok == 0).tolist()
    expected = words[0, 3] @ tiny.text_projection
    torch.testing.assert_close(state[0], expected)


def test_text_matches_open_clip_and_is_causal(tiny):
    import open_clip

    torch.manual_seed(1)
    ref = open_clip.model.CLIP(**clip_config("tiny"), quick_gelu=True).eval()
    ours = build_clip_backbone("tiny").eval()
    ours.load_state_dict({**ours.state_dict(), **ref.state_dict()})
    full = _tokens([[49406, 320, 1929, 539, 49407], [49406, 786, 49407]], length=77)
    with torch.no_grad():
        _, state77, _ = ours.encode_text(full)
        torch.testing.assert_close(state77, ref.encode_text(full), rtol=1e-5, atol=1e-5)
        # Causal mask: cutting the sequence to word_len does not change the kept positions.
        words17, state17, _ = ours.encode_text(full[:, :17])
        words77, _, _ = ours.encode_text(full)
    torch.testing.assert_close(words17, words77[:, :17], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state17, state77, rtol=1e-5, atol=1e-5)


def test_dense_attention_pool_equals_clip_attention_at_every_pixel(tiny):
    """At 7x7 (224 input) the resized positional embedding is the learned one: the dense pool is
    CLIP's multi-head attention without the class token, plus connect, then ReLU."""
    pool = tiny.visual.attnpool
    x = torch.randn(2, pool.c_proj.in_features, 7, 7)
    with torch.no_grad():
        got = tiny.dense_attention_pool(x)
        t = x.flatten(2).permute(2, 0, 1) + pool.positional_embedding[1:, None, :]
        ref, _ = F.multi_head_attention_forward(
            t,
            t,
            t,
            t.shape[-1],
            pool.num_heads,
            None,
            torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            None,
            None,
            False,
            0.0,
            pool.c_proj.weight,
            pool.c_proj.bias,
            training=False,
            need_weights=False,
            use_separate_proj_weight=True,
            q_proj_weight=pool.q_proj.weight,
            k_proj_weight=pool.k_proj.weight,
            v_proj_weight=pool.v_proj.weight,
        )
        ref = F.relu(ref.permute(1, 2, 0).reshape(2, -1, 7, 7) + pool.connect(x))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_pretrained_local_open_clip_checkpoint(tmp_path):
    import open_clip

    torch.manual_seed(2)
    ref = open_clip.model.CLIP(**clip_config("tiny"), quick_gelu=True)
    path = tmp_path / "tiny_clip.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, path)
    ours = build_clip_backbone("tiny", pretrained=path)
    sd = ours.state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(sd[k], v), k
    # Plain state dict as open_clip saves it works too.
    torch.save(ref.state_dict(), tmp_path / "plain.pt")
    ours2 = build_clip_backbone("tiny", pretrained=tmp_path / "plain.pt")
    assert torch.equal(ours2.token_embedding.weight, ref.token_embedding.weight)


def test_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_clip_backbone("tiny", pretrained=tmp_path / "nope.pt")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        build_clip_backbone("tiny", pretrained=bad)
    other = build_clip_backbone("tiny", vision_width=8)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        build_clip_backbone("tiny", pretrained=tmp_path / "other.pt")


def test_bad_arch_and_widths():
    with pytest.raises(ValueError, match="unknown CLIP arch"):
        build_clip_backbone("RN18")
    with pytest.raises(ValueError, match="bogus"):
        build_clip_backbone("tiny", bogus=3)
    with pytest.raises(ValueError, match="openai"):
        build_clip_backbone("tiny", pretrained="openai")


def test_rn50_parameter_count_and_channels():
    m = build_clip_backbone("RN50")
    n = sum(p.numel() for p in m.parameters())
    assert abs(n / 1e6 - 104.1) < 0.05, n
    assert m.vision_channels == (512, 1024, 1024) and m.word_dim == 512 and m.state_dim == 1024


# ---- issue 14, item 1: nothing a user passes, or a checkpoint names, is loaded in a way that runs code
def _torchscript_tiny_clip(path, dtype=torch.float32):
    """A TorchScript archive (the layout of OpenAI's RN50.pt) holding a tiny CLIP's parameters."""
    import open_clip
    from torch import nn

    clip = open_clip.model.CLIP(**clip_config("tiny"), quick_gelu=True).eval().to(dtype)

    class Holder(nn.Module):  # the CLIP's children and parameters under OpenAI's names
        def __init__(self):
            super().__init__()
            for n, ch in clip.named_children():
                self.add_module(n, ch)
            for n, p in clip.named_parameters(recurse=False):
                self.register_parameter(n, p)

        def forward(self, x):
            return self.text_projection.sum() + self.positional_embedding.sum() + x

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(Holder(), torch.zeros(1, dtype=dtype)).save(str(path))
    return clip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_torchscript_weights_are_read_without_torch_jit_load(tmp_path, monkeypatch, dtype):
    from refseg_core.models.clip import read_clip_state_dict

    clip = _torchscript_tiny_clip(tmp_path / "RN.pt", dtype)
    calls = []
    monkeypatch.setattr(
        torch.jit,
        "load",
        lambda *a, **k: (
            calls.append(a) or (_ for _ in ()).throw(AssertionError("torch.jit.load runs the archive's code"))
        ),
    )
    sd = read_clip_state_dict(tmp_path / "RN.pt")
    assert calls == []
    ref = clip.state_dict()
    assert set(sd) == set(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)
    torch.manual_seed(0)
    b = build_clip_backbone("tiny", pretrained=tmp_path / "RN.pt")
    assert calls == [] and torch.equal(
        b.visual.layer1[0].conv1.weight, clip.visual.layer1[0].conv1.weight.float()
    )


def test_torchscript_archive_naming_a_function_is_refused_without_calling_it(tmp_path):
    import os
    import pickle
    import zipfile

    from refseg_core.models.clip import read_clip_state_dict

    witness = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {witness}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
        zf.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        zf.writestr("evil/code/__torch__.py", "")
    with pytest.raises(ValueError, match="posix.system|os.system|nt.system") as e:
        read_clip_state_dict(path)
    assert "evil.pt" in str(e.value) and not witness.exists()


def test_checkpoint_model_config_never_opens_a_weights_file(tmp_path, monkeypatch):
    """A checkpoint whose model_config names pretrained= or glove_path= files: rebuilding it opens neither
    (its weights are in its state dict)."""
    import refseg_core.models.clip as clip_mod
    from refseg_core.engine.checkpoint import model_from_checkpoint
    from refseg_core.models import build_model

    model = build_model("cris_tiny")
    cfg = dict(model.config, pretrained=str(tmp_path / "elsewhere.pt"))
    (tmp_path / "elsewhere.pt").write_bytes(b"x")
    opened = []
    monkeypatch.setattr(clip_mod, "read_clip_state_dict", lambda p: opened.append(p) or {})
    rebuilt = model_from_checkpoint({"model": model.state_dict(), "model_config": cfg})
    assert opened == []
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))
    lts = build_model("lts_tiny", vocab=["red", "ball"], word_len=5)
    cfg = dict(lts.config, pretrained=str(tmp_path / "dark.pt"), glove_path=str(tmp_path / "glove.txt"))
    model_from_checkpoint({"model": lts.state_dict(), "model_config": cfg})  # old code: no such file
