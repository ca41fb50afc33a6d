"""DarkNet-53 (the LTS visual encoder): topology, strides, widths, local weight loading."""

import pytest
import torch
from torch import nn

from refseg_core.models.darknet import DarkNet53, load_darknet_weights


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
