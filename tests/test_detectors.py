"""The detector registry of Tables 5-7: parameter counts, shapes, seeding and the tables."""

import pytest
import torch

# Importing freqbackdoor.detection.architectures registers the detectors in freqbackdoor.models.classifier.MODELS.
from freqbackdoor.detection.architectures import (
    DETECTORS,
    PAPER_PARAMETERS,
    architecture_summary,
    build_detector,
    detector_table,
    detector_table_markdown,
)
from freqbackdoor.errors import ConfigError
from freqbackdoor.models.classifier import build_model, count_parameters

# Table 5 of the paper, trainable parameters for a 32 x 32 x 3 input and 2 outputs, in its order.
TABLE5_PARAMETERS = {
    "linear": 6_146,
    "mlp_128_hidden": 393_602,
    "cnn3_kmax32": 10_214,
    "cnn3_kmax64": 31_862,
    "cnn3_kmax128": 109_718,
    "cnn4_kmax128": 245_014,
    "cnn5_kmax128": 278_870,
    "cnn6_kmax128": 292_002,
}

# Table 7, as height x width x channels after each listed layer.
TABLE7_SHAPES = [
    "32 x 32 x 3",
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
    "2",
]


def test_registry_is_table5_in_order():
    assert list(DETECTORS) == list(TABLE5_PARAMETERS)
    assert PAPER_PARAMETERS == TABLE5_PARAMETERS
    for name, detector in DETECTORS.items():
        assert detector.architecture == name


@pytest.mark.parametrize("name", list(TABLE5_PARAMETERS))
def test_parameter_count_equals_the_paper(name):
    model = build_detector(name, 32, seed=0)
    assert count_parameters(model) == TABLE5_PARAMETERS[name]
    assert model.num_classes == 2 and model.input_size == 32 and model.options == {}


def test_parameter_counts_by_hand():
    # linear: 3072 * 2 + 2; MLP: 3072 * 128 + 128 + 128 * 2 + 2
    assert count_parameters(build_detector("linear")) == 32 * 32 * 3 * 2 + 2
    assert count_parameters(build_detector("mlp_128_hidden")) == 3072 * 128 + 128 + 258
    # cnn6: six 3x3 convolutions (9 * in + 1) * out, BatchNorm 2 per channel, dense 2048 -> 2
    convs = 896 + 9248 + 18496 + 36928 + 73856 + 147584
    batch_norm = 2 * (32 + 32 + 64 + 64 + 128 + 128)
    assert count_parameters(build_detector("cnn6_kmax128")) == convs + batch_norm + 4098
    # cnn3_kmax32: stem 3 -> 3 (84), 3 -> 8 (224), 8 -> 16 (1168), 16 -> 32 (4640), 8*8*32 -> 2
    assert count_parameters(build_detector("cnn3_kmax32")) == 84 + 224 + 1168 + 4640 + 4098


def test_linear_detector_at_table6_size():
    model = build_detector("linear", 224, seed=0)
    assert count_parameters(model) == 150_528 * 2 + 2 == 301_058
    assert model(torch.rand(2, 3, 224, 224)).shape == (2, 2)


@pytest.mark.parametrize("name", list(TABLE5_PARAMETERS))
@pytest.mark.parametrize("size", [32, 64])
def test_forward_gives_two_logits(name, size):
    model = build_detector(name, size, seed=1).eval()
    with torch.no_grad():
        logits = model(torch.rand(3, 3, size, size))
    assert logits.shape == (3, 2)
    assert torch.isfinite(logits).all()
    assert model.features(torch.rand(1, 3, size, size)).ndim == 2


@pytest.mark.parametrize("name", ["cnn3_kmax32", "cnn6_kmax128"])
def test_convolutional_detectors_take_other_multiples_of_eight(name):
    model = build_detector(name, 40, seed=0).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 40, 40)).shape == (2, 2)


def test_seeded_builds_repeat_and_differ_by_seed():
    first = build_detector("cnn3_kmax64", seed=7).state_dict()
    again = build_detector("cnn3_kmax64", seed=7).state_dict()
    other = build_detector("cnn3_kmax64", seed=8).state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["classifier.weight"], other["classifier.weight"])


def test_seeded_build_leaves_global_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_detector("mlp_128_hidden", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_name_raises_config_error_naming_it():
    with pytest.raises(ConfigError, match="cnn7_kmax256") as caught:
        build_detector("cnn7_kmax256")
    assert "cnn6_kmax128" in str(caught.value)


@pytest.mark.parametrize(("name", "size"), [("cnn6_kmax128", 36), ("cnn5_kmax128", 8)])
def test_unusable_input_size_raises_config_error(name, size):
    with pytest.raises(ConfigError, match=name):
        build_detector(name, size)


def test_build_model_builds_a_registered_detector():
    model = build_model("cnn6_kmax128", 2, 32, seed=3)
    assert isinstance(model, DETECTORS["cnn6_kmax128"])
    assert count_parameters(model) == 292_002
    with pytest.raises(ConfigError, match="2 outputs"):
        build_model("linear", 10, 32)


def test_table7_lists_the_papers_shapes_and_total():
    table = detector_table("cnn6_kmax128", 32)
    assert table["output_shape"].tolist() == TABLE7_SHAPES
    assert table["layer"].tolist()[:4] == ["Input", "Conv2d 3x3", "Conv2d 3x3", "Max-Pooling 2x2"]
    assert table["layer"].tolist()[-2:] == ["Flatten", "Dense"]
    assert table["parameters"].sum() == 292_002

    text = detector_table_markdown("cnn6_kmax128", 32, "Table 7: the CNN detector")
    assert text.startswith("Table 7: the CNN detector")
    for shape in ("32 x 32 x 32", "16 x 16 x 64", "8 x 8 x 128", "4 x 4 x 128", "| 2048", "| 2 "):
        assert shape in text
    assert "BatchNorm" in text and "ELU" not in table["layer"].tolist()
    assert "Total parameters: 292,002" in text


def test_table6_lists_flatten_and_dense_and_total():
    table = detector_table("linear", 224)
    assert table["layer"].tolist() == ["Input", "Flatten", "Dense"]
    assert table["output_shape"].tolist() == ["224 x 224 x 3", "150528", "2"]
    text = detector_table_markdown("linear", 224, "Table 6: the linear detector")
    assert "150528" in text and "| 2 " in text
    assert "Total parameters: 301,058" in text


def test_architecture_summary_compares_with_the_paper():
    summary = architecture_summary(32)
    assert summary.columns.tolist() == ["architecture", "parameters", "paper_parameters", "layout"]
    assert summary["architecture"].tolist() == list(TABLE5_PARAMETERS)
    assert (summary["parameters"] == summary["paper_parameters"]).all()
    assert summary.set_index("architecture").loc["cnn6_kmax128", "layout"].startswith("conv 32-32")

    larger = architecture_summary(64)
    assert larger["paper_parameters"].isna().all()
    assert (larger["parameters"] > summary["parameters"]).all()
