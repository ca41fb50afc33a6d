"""DarkNet-53 (the LTS visual encoder): topology, strides, widths, local weight loading, and timm's ImageNet
weights (key mapping checked against timm's own forward, its normalisation carried by the model, the tag
fetched from a stand-in Hugging Face Hub)."""

import pytest
import torch
from torch import nn

from refseg_core.models.darknet import TIMM_SLOPE, DarkNet53, load_darknet_weights


def test_full_darknet53_has_52_convs_and_known_size():
    net = DarkNet53()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # DarkNet-53 = 52 convolutions + the classifier's fully connected layer (absent here).
    assert len(convs) == 52
    assert net.out_channels == (256, 512, 1024)
    n = sum(p.numel() for p in net.parameters())
    assert 40.5e6 < n < 40.7e6  # the YOLOv3 backbone's ~40.6M parameters


def test_tiny_strides_channels_and_depth():
    net = DarkNet53(width=0.125, depth=0.25)
    assert net.out_channels == (32, 64, 128)
    assert [len(s) - 1 for s in net.stages] == [1, 1, 2, 2, 1]  # residual blocks, at least one each
    c3, c4, c5 = net(torch.randn(2, 3, 64, 96))
    assert c3.shape == (2, 32, 8, 12)
    assert c4.shape == (2, 64, 4, 6)
    assert c5.shape == (2, 128, 2, 3)


def test_bad_multipliers_rejected():
    with pytest.raises(ValueError, match="width"):
        DarkNet53(width=0)


def test_load_weights_round_trip_with_prefix_and_nesting(tmp_path):
    src = DarkNet53(width=0.125, depth=0.25).eval()
    path = tmp_path / "darknet.pt"
    torch.save({"state_dict": {"backbone." + k: v for k, v in src.state_dict().items()}}, path)
    dst = load_darknet_weights(DarkNet53(width=0.125, depth=0.25).eval(), path)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(src(x), dst(x)):
        torch.testing.assert_close(a, b)


def test_load_weights_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_darknet_weights(DarkNet53(width=0.125, depth=0.25), tmp_path / "missing.pt")
    path = tmp_path / "other_width.pt"
    torch.save(DarkNet53(width=0.25, depth=0.25).state_dict(), path)
    with pytest.raises(ValueError, match="other_width.pt"):
        load_darknet_weights(DarkNet53(width=0.125, depth=0.25), path)


def test_lts_builder_loads_local_darknet_weights(tmp_path):
    from refseg_core.models import build_model

    src = DarkNet53(width=0.125, depth=0.25)
    with torch.no_grad():
        for p in src.parameters():
            p.uniform_(-1, 1)  # distinguishable from a fresh initialisation
    path = tmp_path / "darknet_tiny.pt"
    torch.save(src.state_dict(), path)
    model = build_model("lts_tiny", vocab=["red"], pretrained=str(path))
    for (name, a), b in zip(src.state_dict().items(), model.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    # The checkpoint carries the weights: the config rebuilds without the file.
    assert model.config["pretrained"] is None and model.init_sources["pretrained"] == str(path)


# -------------------------------------------------------------------- timm's ImageNet DarkNet-53 (issue 23)
@pytest.fixture(scope="module")
def timm_darknet():
    """timm's darknet53 with random weights and running statistics (so that a wrong mapping shows)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("darknet53", pretrained=False).eval()
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return model


def _timm_features(model, x):
    """timm's stride-8/16/32 maps (what ``features_only=True, out_indices=(3, 4, 5)`` returns)."""
    x = model.stem(x)
    feats = []
    for stage in model.stages:
        x = stage(x)
        feats.append(x)
    return feats[2:]


@pytest.mark.slow
def test_timm_weights_give_timms_features(timm_darknet):
    import timm

    state = timm_darknet.state_dict()
    ours = load_darknet_weights(DarkNet53(slope=TIMM_SLOPE).eval(), state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want, got = _timm_features(timm_darknet, x), ours(x)
        for a, b in zip(want, got):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        # the library's own feature extractor returns the same three maps
        feat = timm.create_model("darknet53", pretrained=False, features_only=True, out_indices=(3, 4, 5))
        feat.load_state_dict(
            {
                k.replace("stem.conv1", "stem_conv1").replace("stages.", "stages_"): v
                for k, v in state.items()
                if not k.startswith("head.")
            }
        )
        for a, b in zip(feat.eval()(x), got):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        # YOLOv3's slope (0.1) is not what these weights were trained with: other features
        yolo = load_darknet_weights(DarkNet53().eval(), state)(x)
    assert not torch.allclose(yolo[2], got[2], atol=1e-3)


def test_imagenet_statistics_are_timms(timm_darknet):
    from refseg_core.models.base import NORMALIZATIONS

    cfg = timm_darknet.pretrained_cfg
    assert NORMALIZATIONS["imagenet"] == (tuple(cfg["mean"]), tuple(cfg["std"]))
    assert cfg["hf_hub_id"] == "timm/darknet53.c2ns_in1k"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_lts_from_a_local_timm_file_carries_its_normalisation(timm_darknet, tmp_path, suffix):
    from safetensors.torch import save_file

    from refseg_core.data.transforms import CLIP_MEAN
    from refseg_core.models import build_model

    state = timm_darknet.state_dict()
    path = tmp_path / f"darknet53{suffix}"
    if suffix == ".safetensors":  # the file timm downloads from Hugging Face
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    model = build_model("lts", vocab=["red"], pretrained=str(path))
    assert model.normalization == "imagenet"
    assert model.input_mean == (0.485, 0.456, 0.406) and model.fill == model.input_mean
    assert model.input_std == (0.229, 0.224, 0.225)
    assert model.backbone.slope == TIMM_SLOPE
    assert torch.equal(model.backbone.stem[0].weight, state["stem.conv1.conv.weight"])
    # the checkpoint's model_config rebuilds the same network (slope, statistics) without the file
    cfg = dict(model.config)
    assert (
        cfg["pretrained"] is None and cfg["leaky_slope"] == TIMM_SLOPE and cfg["normalization"] == "imagenet"
    )
    rebuilt = build_model(cfg.pop("name"), **cfg)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.normalization == "imagenet" and rebuilt.backbone.slope == TIMM_SLOPE
    # a random DarkNet (the smoke runs) keeps YOLOv3's slope and the book's CLIP statistics
    plain = build_model("lts_tiny")
    assert plain.normalization == "clip" and plain.input_mean == CLIP_MEAN and plain.backbone.slope == 0.1
    # timm's full-width weights do not fit the tiny model: one sentence naming the file
    with pytest.raises(ValueError, match=f"darknet53{suffix}.*do not fit DarkNet53"):
        build_model("lts_tiny", vocab=["red"], pretrained=str(path))


def test_unreadable_weight_files_are_one_sentence(tmp_path):
    from refseg_core.models import build_model

    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ValueError) as e:
        build_model("lts_tiny", pretrained=str(junk))
    assert "junk.pt" in str(e.value) and "weights_only" not in str(e.value)
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="junk.safetensors.*not a readable safetensors file"):
        build_model("lts_tiny", pretrained=str(bad))
    with pytest.raises(FileNotFoundError, match="neither a local file nor a tag.*darknet53.c2ns_in1k"):
        build_model("lts_tiny", pretrained="darknet53.in22k")


@pytest.mark.slow
def test_the_timm_tag_downloads_through_hugging_face(timm_darknet, tmp_path):
    """``pretrained="darknet53.c2ns_in1k"`` asks the Hub (HF_ENDPOINT: a stand-in on 127.0.0.1) for timm's
    safetensors file and builds LTS from it."""
    import os
    import subprocess
    import sys

    from _hf_server import hf_stand_in
    from safetensors.torch import save_file

    repo = tmp_path / "hub" / "timm" / "darknet53.c2ns_in1k"
    repo.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in timm_darknet.state_dict().items()}, str(repo / "model.safetensors")
    )
    code = (
        "import torch\n"
        "from refseg_core.models import build_model\n"
        "m = build_model('lts', vocab=['red'], pretrained='darknet53.c2ns_in1k')\n"
        "print(m.normalization, m.backbone.slope, float(m.backbone.stem[0].weight.double().sum()))\n"
    )
    with hf_stand_in(tmp_path / "hub") as (endpoint, requests):
        env = dict(
            os.environ, HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1"
        )
        env.pop("HF_HUB_OFFLINE", None)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    norm, slope, total = r.stdout.split()
    assert (norm, float(slope)) == ("imagenet", TIMM_SLOPE)
    want = float(timm_darknet.state_dict()["stem.conv1.conv.weight"].double().sum())
    assert float(total) == pytest.approx(want, rel=1e-9)
    assert "/timm/darknet53.c2ns_in1k/resolve/main/model.safetensors" in requests
