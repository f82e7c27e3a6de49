"""The figure functions draw the expected panels and write PNG and PDF files."""

import numpy as np
import pytest

from freqbackdoor.detection.manipulations import MANIPULATIONS
from freqbackdoor.paper.figures import (
    image_log_spectrum,
    pair_comparison_figure,
    save_figure,
    spectrum_heatmaps,
    stretch_difference,
    trigger_examples_figure,
)
from freqbackdoor.paper.figures_section4 import manipulations_figure
from freqbackdoor.triggers.names import display_name


@pytest.fixture
def image(rng):
    return rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)


def assert_saved(fig, tmp_path, stem):
    png, pdf = tmp_path / f"{stem}.png", tmp_path / f"{stem}.pdf"
    save_figure(fig, png, pdf)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"


def colorbar_label(fig):
    return fig.axes[-1].get_ylabel()


def test_trigger_examples_figure(image, tmp_path):
    square = image.copy()
    square[-5:-1, -5:-1] = 255
    blended = np.clip(image.astype(int) + 30, 0, 255).astype(np.uint8)
    fig = trigger_examples_figure(image, {"badnets": square, "blend": blended}, "Figure 2")
    assert len(fig.axes) == 2 * 6 + 1  # six panels a trigger and one colour bar
    assert "range" in colorbar_label(fig)
    assert fig.axes[0].get_ylabel() == display_name("badnets")
    assert "stretched" in fig.axes[2].get_title()
    assert_saved(fig, tmp_path, "figure2")


def test_manipulations_figure(image, tmp_path):
    manipulated = {kind: np.roll(image, i + 1, axis=1) for i, kind in enumerate(MANIPULATIONS)}
    fig = manipulations_figure(image, manipulated, "Figure 5")
    assert len(fig.axes) == 2 * (1 + len(MANIPULATIONS)) + 1
    assert fig.axes[2].get_title() == "(a) white block"
    assert "range" in colorbar_label(fig)
    assert_saved(fig, tmp_path, "figure5")


def test_pair_comparison_figure(image, rng, tmp_path):
    names = ["badnets", "blend", "trojan_wm"]
    examples = [(name, image, 255 - image) for name in names]
    clean = rng.uniform(0, 3, size=(16, 16))
    spectra = [(name, clean, clean + 0.5) for name in names]
    fig = pair_comparison_figure(examples, spectra, "Figures 7-10", n_samples=123, pairs_per_row=2)
    assert len(fig.axes) == 4 * len(names) + 1
    label = colorbar_label(fig)
    assert f"{min(clean.min(), clean.min() + 0.5):.2f}" in label
    assert f"{clean.max() + 0.5:.2f}" in label
    assert any("123" in text.get_text() for text in fig.texts)
    assert_saved(fig, tmp_path, "pairs")


def test_pair_comparison_figure_rejects_misaligned_inputs(image):
    spectrum = np.zeros((16, 16))
    with pytest.raises(ValueError, match="aligned"):
        pair_comparison_figure(
            [("badnets", image, image)], [("blend", spectrum, spectrum)], "x", n_samples=1
        )


def test_spectrum_heatmaps_still_draws_a_row(tmp_path):
    spectra = [np.zeros((8, 8)), np.ones((8, 8))]
    fig = spectrum_heatmaps(spectra, ["clean", "badnets"], "Figure 1")
    assert len(fig.axes) == 3
    assert_saved(fig, tmp_path, "figure1")


def test_stretch_difference():
    positive = np.zeros((4, 4, 3))
    positive[0, 0] = 50
    shown, gain = stretch_difference(positive)
    assert shown.max() == 1.0 and shown.min() == 0.0 and gain == pytest.approx(255 / 50)
    signed = np.zeros((4, 4, 3))
    signed[0, 0], signed[1, 1] = 10, -20
    shown, _ = stretch_difference(signed)
    assert shown[2, 2, 0] == 0.5 and shown[1, 1, 0] == 0.0 and shown[0, 0, 0] == 0.75
    shown, gain = stretch_difference(np.zeros((2, 2, 3)))
    assert not shown.any() and gain == 1.0


def test_image_log_spectrum_of_a_flat_image_is_dc_only():
    flat = np.full((8, 8, 3), 100, np.uint8)
    spectrum = image_log_spectrum(flat)
    assert spectrum.shape == (8, 8)
    assert spectrum[0, 0] == pytest.approx(np.log10(800.0))  # orthonormal DC: 8 * 100
    assert spectrum[1:, 1:].max() < -2.9  # floored zeros
