"""CLIP's dense image-text similarity (refseg_core.clip_similarity) on a tiny random CLIP."""

import pytest
import torch
import torch.nn.functional as F

from refseg_core.clip_similarity import dense_features, pool_values, text_similarity
from refseg_core.models.clip import build_clip_backbone
from refseg_core.text import ClipTokenizer


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return build_clip_backbone("tiny", word_len=8).eval()


def test_dense_features_are_the_value_path_of_the_attention_pool(clip):
    torch.manual_seed(1)
    image = torch.randn(2, 3, 64, 96)
    feats = dense_features(clip, image)
    assert feats.shape == (2, clip.state_dim, 2, 3)
    # At a map of the pool's own size (7x7, CLIP's 224 px) the positional embedding is not resized,
    # and each position is c_proj(v_proj(x + pos)).
    pool = clip.visual.attnpool
    x = torch.randn(1, pool.positional_embedding.shape[1], 7, 7)
    t = x.flatten(2).transpose(1, 2)[0] + pool.positional_embedding[1:]
    want = pool.c_proj(pool.v_proj(t)).t().reshape(-1, 7, 7)
    torch.testing.assert_close(pool_values(pool, x)[0], want, rtol=1e-4, atol=1e-5)


def test_text_similarity_is_a_cosine_per_position(clip):
    torch.manual_seed(2)
    image = torch.randn(1, 3, 64, 64)
    tokens = ClipTokenizer(8)(["a red square", "the blue circle", "left"])
    sim = text_similarity(clip, image, tokens)
    assert sim.shape == (3, 2, 2) and bool((sim.abs() <= 1 + 1e-6).all())
    pixels = dense_features(clip, image)[0, :, 1, 0]
    state = clip.encode_text(tokens)[1][2]
    torch.testing.assert_close(sim[2, 1, 0], F.cosine_similarity(pixels, state, dim=0))
    with pytest.raises(ValueError, match="one normalised image"):
        text_similarity(clip, torch.randn(2, 3, 64, 64), tokens)
