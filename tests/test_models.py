"""Table 8's reference classifier: parameter count, layer shapes, the registry and the table."""

import pytest
import torch
from torch import nn

from freqbackdoor.errors import ConfigError
from freqbackdoor.models.classifier import (
    ReferenceCNN,
    batchnorm_parameters,
    build_model,
    count_parameters,
    table8,
    table8_markdown,
)

# Table 8 of the paper, as height x width x channels after each listed layer.
PAPER_SHAPES = [
    "32 x 32 x 32",
    "32 x 32 x 32",
    "16 x 16 x 32",
    "16 x 16 x 64",
    "16 x 16 x 64",
    "8 x 8 x 64",
    "8 x 8 x 128",
    "8 x 8 x 128",
    "4 x 4 x 128",
    "2048",
    "10",
]


def test_parameter_count_by_hand():
    # 3x3 convolutions, (3*3*in + 1) * out each:
    #   3->32: 896, 32->32: 9,248, 32->64: 18,496, 64->64: 36,928, 64->128: 73,856, 128->128: 147,584
    # dense: 2048 * 10 + 10 = 20,490
    convs = 896 + 9248 + 18496 + 36928 + 73856 + 147584
    # BatchNorm after each convolution: a scale and an offset per channel, trainable, and a
    # running mean and variance per channel, buffers: 2 * 448 each.
    model = ReferenceCNN(10, 32)
    assert batchnorm_parameters(model) == (896, 896)
    assert count_parameters(model) == convs + 2048 * 10 + 10 + 896 == 307_498 + 896
    # the authors' Keras file holds 309,290 weights: Table 8's count plus both BatchNorm parts
    weights = sum(t.numel() for k, t in model.state_dict().items() if "num_batches" not in k)
    assert weights == 309_290


def test_layout_is_the_authors():
    """Conv -> ReLU -> BatchNorm (Keras momentum 0.99 / eps 1e-3), MaxPool -> Dropout 0.3/0.4/0.5."""
    layers = list(ReferenceCNN(10, 32).features)
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds[:4] == ["Conv2d", "ReLU", "BatchNorm2d", "Conv2d"]
    norms = [layer for layer in layers if isinstance(layer, nn.BatchNorm2d)]
    assert len(norms) == 6
    assert all(n.momentum == 0.01 and n.eps == 1e-3 for n in norms)
    assert [d.p for d in layers if isinstance(d, nn.Dropout)] == [0.3, 0.4, 0.5]
    pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    assert all(isinstance(layers[i + 1], nn.Dropout) for i in pools)


def test_layer_table_matches_the_paper():
    table = table8(ReferenceCNN(10, 32), 32)
    assert table["output_shape"].tolist() == PAPER_SHAPES
    assert table["layer"].tolist() == [
        "Conv2d 3x3",
        "Conv2d 3x3",
        "Max-Pooling 2x2",
        "Conv2d 3x3",
        "Conv2d 3x3",
        "Max-Pooling 2x2",
        "Conv2d 3x3",
        "Conv2d 3x3",
        "Max-Pooling 2x2",
        "Flatten",
        "Dense",
    ]
    assert table["parameters"].sum() == 307_498
    assert table["module"].iloc[-1] == "classifier"


def test_layer_table_follows_input_size_and_keeps_mode():
    model = ReferenceCNN(5, 64)
    model.train()
    table = table8(model)
    assert table["output_shape"].iloc[0] == "64 x 64 x 32"
    assert table["output_shape"].iloc[-2:].tolist() == [str(128 * 8 * 8), "5"]
    assert model.training
    assert not model._forward_hooks and not model.classifier._forward_hooks


def test_table8_markdown_has_title_rows_and_total():
    text = table8_markdown(table8(ReferenceCNN(10, 32), 32), 10, 32)
    assert text.startswith("Table 8: the reference classifier")
    assert "| Dense" in text and "8 x 8 x 128" in text
    assert "Total parameters: 307,498" in text
    # the BatchNorm parameters are stated beside the published count
    assert "896 trainable" in text and "308,394 trainable in all" in text and "309,290" in text


def test_features_and_classifier_compose_to_forward():
    model = ReferenceCNN(3, 16).eval()
    x = torch.rand(2, 3, 16, 16)
    features = model.features(x)
    assert features.shape == (2, 128 * 2 * 2)
    torch.testing.assert_close(model.classifier(features), model(x))


def test_build_model_registry():
    a = build_model("reference_cnn", 4, 32, seed=7)
    b = build_model("reference_cnn", 4, 32, seed=7)
    assert isinstance(a, ReferenceCNN) and a.architecture == "reference_cnn"
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    with pytest.raises(ConfigError, match="resnet"):
        build_model("resnet", 10, 32)
    with pytest.raises(ConfigError, match="divisible by 8"):
        build_model("reference_cnn", 10, 30)


def test_downsampled_model_runs_table8_layers_on_the_pooled_image():
    small, large = ReferenceCNN(7, 32).eval(), ReferenceCNN(7, 224, downsample=7).eval()
    assert count_parameters(large) == count_parameters(small)
    assert large.options == {"downsample": 7} and small.options == {"downsample": 1}
    images = torch.rand(2, 3, 224, 224)
    pooled = torch.nn.functional.avg_pool2d(images, 7)
    # the pooling layer shifts the convolutions' indices in ``features``; the weights line up
    large.load_state_dict(dict(zip(large.state_dict(), small.state_dict().values(), strict=True)))
    with torch.no_grad():
        torch.testing.assert_close(large(images), small(pooled))
    with pytest.raises(ConfigError, match="downsample"):
        build_model("reference_cnn", 7, 224, downsample=5)
