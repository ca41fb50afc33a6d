"""CRIS (refseg_core/models/cris.py, cris_official.py): shapes, counts, tokens, loss, gradients,
optimiser groups, the official lr quirk and the official checkpoint key mapping."""

import collections

import pytest
import torch
import torch.nn.functional as F

from refseg_core.config import TrainConfig
from refseg_core.engine.optim import lr_by_epoch, official_epoch_lrs
from refseg_core.models import build_model
from refseg_core.models.cris_official import load_official_checkpoint, official_to_ours, ours_to_official
from refseg_core.models.layers import sine_position_1d, sine_position_2d


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("cris_tiny").eval()


def _inputs(model, texts, size=64):
    return torch.randn(len(texts), 3, size, size), model.tokenizer(texts)


def test_forward_features_shapes(tiny):
    images, tokens = _inputs(tiny, ["the man on the left", "a dog"], size=128)
    f = tiny.forward_features(images, tokens)
    expected = dict(
        v3=(2, 128, 16, 16),
        v4=(2, 256, 8, 8),
        v5=(2, 128, 4, 4),
        words=(2, 17, 64),
        state=(2, 128),
        pad_mask=(2, 17),
        fused=(2, 64, 8, 8),
        decoder=(2, 64, 8, 8),
        pixel_embeddings=(2, 32, 32, 32),
        kernel=(2, 32, 3, 3),
        bias=(2,),
        logits=(2, 1, 32, 32),
    )
    for k, shape in expected.items():
        assert tuple(f[k].shape) == shape, k
    assert len(f["word_attention_layers"]) == tiny.config["num_layers"]
    att = f["word_attention_layers"][0]
    assert att.shape == (2, 4, 64, 17)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, 64))
    # Padding words get no attention.
    assert (att.masked_select(f["pad_mask"][:, None, None, :].expand_as(att)) == 0).all()
    # The protocol's word_attention: the last layer, mean over heads, as (B, L, h, w).
    last = f["word_attention_layers"][-1].mean(1)  # (B, HW, L)
    torch.testing.assert_close(f["word_attention"], last.transpose(1, 2).reshape(2, 17, 8, 8))
    # The attention path and the fused SDPA path give the same logits.
    torch.testing.assert_close(tiny(images, tokens), f["logits"], rtol=1e-4, atol=1e-5)


def test_images_of_any_size_divisible_by_32(tiny):
    tokens = tiny.tokenizer(["cat"])
    for h, w in [(32, 32), (96, 160)]:
        assert tiny(torch.randn(1, 3, h, w), tokens).shape == (1, 1, h // 4, w // 4)
    with pytest.raises(ValueError, match="divisible by 32"):
        tiny(torch.randn(1, 3, 100, 100), tokens)


def test_dynamic_kernel_is_per_sample(tiny):
    """Sample i's logits depend only on sample i: the grouped conv keeps samples apart."""
    images, tokens = _inputs(tiny, ["the red car", "a dog on the grass", "the tallest person"])
    with torch.no_grad():
        together = tiny(images, tokens)
        alone = torch.cat([tiny(images[i : i + 1], tokens[i : i + 1]) for i in range(3)])
        f = tiny.forward_features(images, tokens, return_attention=False)
        manual = F.conv2d(f["pixel_embeddings"][1:2], f["kernel"][1:2], f["bias"][1:2], padding=1)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(f["logits"][1:2], manual, rtol=1e-4, atol=1e-5)


def test_tokenizer_truncation_mixed_lengths_and_empty(tiny):
    tok = tiny.tokenizer
    long = " ".join(["the big red car"] * 10)
    t = tok([long, "dog"])
    assert t.shape == (2, 17)
    assert t[0, -1] == tok.eot_id and t[0].argmax() == 16  # EOT kept at the end, where state is read
    assert t[1, :3].tolist() == [tok.sot_id, t[1, 1].item(), tok.eot_id] and (t[1, 3:] == 0).all()
    with pytest.raises(ValueError, match="empty"):
        tok(["dog", "   "])
    # The padding of a short expression does not change its output (causal text, masked cross-attention).
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = tiny(images, tok(["dog"]))
        b = tiny(images, tok(["dog"])[:, :5])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batch_of_one_eval_and_clear_error_in_training():
    model = build_model("cris_tiny")
    images, tokens = _inputs(model, ["dog"])
    with pytest.raises(ValueError, match="batch of >= 2"):
        model.loss(images, tokens, torch.zeros(1, 1, 64, 64))
    assert model.eval()(images, tokens).shape == (1, 1, 16, 16)


def test_loss_is_bce_on_nearest_resized_mask():
    torch.manual_seed(0)
    model = build_model("cris_tiny").train()
    images, tokens = _inputs(model, ["a", "b"])
    masks = (torch.rand(2, 1, 64, 64) > 0.5).float()
    torch.manual_seed(1)
    out = model.loss(images, tokens, masks)
    target = F.interpolate(masks, size=(16, 16), mode="nearest")
    expected = F.binary_cross_entropy_with_logits(out["logits"], target)
    torch.testing.assert_close(out["loss"], expected)
    assert out["logits"].shape == (2, 1, 16, 16) and float(out["bce"]) == pytest.approx(
        float(expected.detach())
    )
    # Not the bilinear-resized mask: a soft mask at stride 4 would give a different value.
    soft = F.interpolate(torch.rand(2, 1, 64, 64), size=(16, 16), mode="bilinear")
    assert not torch.allclose(F.binary_cross_entropy_with_logits(out["logits"], soft), expected)


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    model = build_model("cris_tiny", num_layers=2).train()
    # CLIP zero-initialises each bottleneck's last BN weight, which blocks the gradient to the branch
    # before it; pretrained weights are non-zero, so set them so here.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bn3.weight"):
                p.fill_(1.0)
    images, tokens = _inputs(model, ["the man on the left", "a dog"])
    model.loss(images, tokens, (torch.rand(2, 1, 64, 64) > 0.5).float())["loss"].backward()
    unused = {"backbone.logit_scale", "backbone.visual.attnpool.positional_embedding"}
    for name, p in model.named_parameters():
        if name in unused:
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Official quirk (b): the token embedding trains by default.
    assert model.backbone.token_embedding.weight.requires_grad


def test_freeze_token_embedding_option():
    model = build_model("cris_tiny", freeze_token_embedding=True)
    assert not model.backbone.token_embedding.weight.requires_grad
    groups = model.param_groups(1e-4)
    assert all(p is not model.backbone.token_embedding.weight for g in groups for p in g["params"])


def test_param_groups_match_official_split(tiny):
    groups = tiny.param_groups(1e-4, backbone_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == pytest.approx(1e-5) and by_name["head"]["lr"] == pytest.approx(1e-4)
    ids = {name: {id(p) for p in g["params"]} for name, g in by_name.items()}
    named = dict(tiny.named_parameters())
    assert id(named["backbone.positional_embedding"]) in ids["head"]
    assert id(named["backbone.visual.attnpool.positional_embedding"]) in ids["head"]
    assert id(named["backbone.visual.attnpool.connect.0.weight"]) in ids["backbone"]
    assert id(named["neck.sentence_proj.0.weight"]) in ids["head"]
    # every parameter is in one group but the frozen logit_scale (the official Adam holds it, with grad None)
    assert len(ids["backbone"]) + len(ids["head"]) == len(named) - 1
    assert id(named["backbone.logit_scale"]) not in ids["backbone"] | ids["head"]
    assert not ids["backbone"] & ids["head"]
    assert by_name["backbone"]["initial_lr"] == pytest.approx(1e-5)


def test_engine_schedule_with_the_quirk_is_the_official_one(tiny):
    """build_optimizer + end_epoch (what engine.train runs) give official_epoch_lrs with
    official_lr_quirk, and the intended schedule (backbone x0.1 from epoch 1) without it."""
    cfg = TrainConfig(model="cris_tiny", epochs=50, lr=1e-4, backbone_lr_mult=0.1, milestones=[35])
    groups = tiny.param_groups(cfg.lr, cfg.backbone_lr_mult)
    official = [official_epoch_lrs(groups, e, cfg.lr, cfg.milestones, cfg.lr_gamma) for e in range(1, 51)]
    quirk = lr_by_epoch(TrainConfig(**dict(cfg.to_dict(), official_lr_quirk=True)), tiny)
    assert quirk == [pytest.approx(row) for row in official]
    intended = lr_by_epoch(cfg, tiny)
    assert intended[0] == pytest.approx([1e-5, 1e-4]) and intended[1:] == quirk[1:]


def test_official_epoch_lrs_reproduce_torch_multisteplr():
    """Replays the official optimiser/scheduler calls (Adam(groups with only initial_lr, lr=base),
    MultiStepLR([35]), scheduler.step(epoch) after each epoch) and compares."""
    base = 1e-4
    w1, w2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    groups = [dict(params=[w1], initial_lr=base * 0.1), dict(params=[w2], initial_lr=base)]
    opt = torch.optim.Adam(groups, lr=base)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[35], gamma=0.1)
    for epoch in range(1, 51):
        want = official_epoch_lrs(groups, epoch, base)
        got = [g["lr"] for g in opt.param_groups]
        assert got == pytest.approx(want), epoch
        with pytest.warns(UserWarning):
            sched.step(epoch)
    assert official_epoch_lrs(groups, 1, base) == pytest.approx([1e-4, 1e-4])
    assert official_epoch_lrs(groups, 2, base) == pytest.approx([1e-5, 1e-4])
    assert official_epoch_lrs(groups, 36, base) == pytest.approx([1e-6, 1e-5])


def test_key_mapping_round_trip_and_official_load(tiny, tmp_path):
    sd = tiny.state_dict()
    official = ours_to_official(sd)
    assert all(k.startswith("module.") for k in official)
    assert "module.decoder.layers.0.multihead_attn.in_proj_weight" in official
    assert official["module.decoder.layers.0.self_attn.in_proj_weight"].shape == (3 * 64, 64)
    assert "module.neck.coordconv.0.conv1.0.weight" in official and "module.proj.txt.weight" in official
    back = official_to_ours(official)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)

    # A checkpoint file as the official train.py writes it (with optimizer/scheduler entries).
    path = tmp_path / "best_model.pth"
    torch.save(
        {
            "epoch": 3,
            "best_iou": 0.5,
            "prec": {"Pr@50": 0.5},
            "state_dict": official,
            "scheduler": {"milestones": collections.Counter([35])},
        },
        path,
    )
    from refseg_core.models import cris_official

    loaded = cris_official.read_official_state_dict(path)
    model = build_model("cris_tiny")
    model.load_state_dict(official_to_ours(loaded))
    model.eval()
    images, tokens = _inputs(tiny, ["a dog", "the cat"])
    with torch.no_grad():
        assert torch.equal(model(images, tokens), tiny(images, tokens))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_official_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="does not fit arch=RN50"):
        load_official_checkpoint(path, arch="RN50")


def test_sine_positions_known_values():
    pe = sine_position_1d(3, 4)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(
        pe[2],
        torch.tensor([2.0, 2.0, 0.02, 0.02]).sin() * torch.tensor([1, 0, 1, 0])
        + torch.tensor([2.0, 2.0, 0.02, 0.02]).cos() * torch.tensor([0, 1, 0, 1]),
    )
    pe2 = sine_position_2d(2, 3, 8)
    assert pe2.shape == (8, 2, 3)
    torch.testing.assert_close(pe2[:4, 1, 2], sine_position_1d(3, 4)[2])  # x channels: column 2
    torch.testing.assert_close(pe2[4:, 1, 2], sine_position_1d(2, 4)[1])  # y channels: row 1
    with pytest.raises(ValueError):
        sine_position_2d(2, 2, 6)


def test_config_rebuilds_and_unknown_keyword(tiny):
    again = build_model(**tiny.config)
    assert again.config == tiny.config
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in tiny.parameters())
    with pytest.raises(ValueError, match="bogus"):
        build_model("cris_tiny", bogus=1)


def test_pretrained_local_path_reaches_the_backbone(tmp_path):
    import open_clip

    from refseg_core.models.clip import clip_config

    ref = open_clip.model.CLIP(**clip_config("tiny"), quick_gelu=True)
    torch.save(ref.state_dict(), tmp_path / "clip.pt")
    model = build_model("cris_tiny", pretrained=tmp_path / "clip.pt")
    assert torch.equal(model.backbone.ln_final.weight, ref.ln_final.weight)
    assert (
        model.init_sources["pretrained"] == str(tmp_path / "clip.pt") and model.config["pretrained"] is None
    )


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_rn50():
    m = build_model("cris_r50")
    counts = [_count(x) / 1e6 for x in (m, m.backbone, m.neck, m.decoder, m.projector)]
    assert counts == pytest.approx([146.8, 104.1, 24.1, 12.6, 6.0], abs=0.05)
    # every parameter trains but CLIP's logit_scale, which no forward reads (its gradient is None in the
    # official code too, so Adam never moves it there either)
    assert [n for n, p in m.named_parameters() if not p.requires_grad] == ["backbone.logit_scale"]


@pytest.mark.slow
def test_parameter_counts_rn101_and_shapes():
    m = build_model("cris_r101")
    assert _count(m) / 1e6 == pytest.approx(161.3, abs=0.05)
    assert m.backbone.vision_channels == (512, 1024, 512) and m.backbone.state_dim == 512
