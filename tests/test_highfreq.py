"""The high-frequency band, band energies and the paired bootstrap ratio of freqbackdoor.frequency.highfreq."""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from freqbackdoor.frequency.dct import dct2
from freqbackdoor.frequency.highfreq import (
    COLUMNS,
    band_energy,
    energy_ratio,
    format_ratio,
    high_band_mask,
    highfreq_markdown,
    highfreq_table,
)
from freqbackdoor.triggers.registry import build_trigger


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth synthetic photos: a random linear gradient per image and channel (uint8)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    rows, cols = np.meshgrid(ramp, ramp, indexing="ij")
    base = rng.uniform(40, 140, size=(n, 1, 1, 3))
    slope_r = rng.uniform(-40, 40, size=(n, 1, 1, 3))
    slope_c = rng.uniform(-40, 40, size=(n, 1, 1, 3))
    images = base + slope_r * rows[None, :, :, None] + slope_c * cols[None, :, :, None]
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def band_energies(images: np.ndarray, cutoff: float = 1.0) -> np.ndarray:
    mask = high_band_mask(images.shape[1], images.shape[2], cutoff)
    return band_energy(dct2(images), mask)


# --------------------------------------------------------------------------- band


def test_band_mask_4x4_cells():
    mask = high_band_mask(4, 4)
    expected = {(1, 3), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3)}  # u + v >= 4
    assert set(zip(*np.nonzero(mask), strict=True)) == expected
    assert not mask[0, 0]  # the DC term is never in the band


def test_band_mask_matches_definition_exactly_on_non_square():
    height, width, cutoff = 6, 10, Fraction(7, 5)
    mask = high_band_mask(height, width, float(cutoff))
    for u in range(height):
        for v in range(width):
            assert mask[u, v] == (Fraction(u, height) + Fraction(v, width) >= cutoff)


def test_band_mask_is_about_half_for_large_images():
    assert high_band_mask(224, 224).mean() == pytest.approx(0.5, abs=0.01)
    # A larger cutoff keeps a smaller corner.
    assert high_band_mask(224, 224, 1.5).mean() < high_band_mask(224, 224, 1.0).mean()


def test_empty_band_raises():
    with pytest.raises(ValueError, match="empty"):
        high_band_mask(4, 4, cutoff=2.0)


# --------------------------------------------------------------------------- energy


def test_band_energy_matches_hand_computation(tmp_path):
    rng = np.random.default_rng(0)
    coefficients = rng.normal(size=(5, 4, 4, 3)).astype(np.float32)
    mask = high_band_mask(4, 4)
    expected = [np.abs(coefficients[i][mask]).mean() for i in range(5)]  # 6 cells x 3 channels
    np.testing.assert_allclose(band_energy(coefficients, mask), expected, rtol=1e-6)
    # Chunking, a memory map and a row selection give the same numbers.
    np.save(tmp_path / "dct.npy", coefficients)
    mapped = np.load(tmp_path / "dct.npy", mmap_mode="r")
    np.testing.assert_allclose(band_energy(mapped, mask, chunk=2), expected, rtol=1e-6)
    np.testing.assert_allclose(
        band_energy(mapped, mask, chunk=1, indices=np.array([1, 3])),
        [expected[1], expected[3]],
        rtol=1e-6,
    )


def test_band_energy_rejects_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match="mask shape"):
        band_energy(np.zeros((2, 4, 4, 3), np.float32), high_band_mask(8, 8))


# --------------------------------------------------------------------------- ratio


def test_identical_sets_give_ratio_one():
    energy = np.random.default_rng(1).uniform(1.0, 3.0, size=50)
    result = energy_ratio(energy, energy.copy(), n_boot=500)
    assert result["ratio"] == pytest.approx(1.0)
    assert result["ci_low"] <= 1.0 <= result["ci_high"]
    assert result["n"] == 50


def test_added_checkerboard_raises_the_ratio():
    images = smooth_images(64)
    # A +-12 checkerboard: energy at the highest frequency, in a different amount per image.
    amplitude = np.random.default_rng(2).uniform(4, 12, size=(64, 1, 1, 1))
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 2 - 1)[None, :, :, None]
    noisy = np.clip(images + amplitude * checker, 0, 255).astype(np.uint8)
    result = energy_ratio(band_energies(images), band_energies(noisy), n_boot=1000)
    assert result["ratio"] > 1.0
    assert result["ci_low"] > 1.0
    assert result["ci_low"] <= result["ratio"] <= result["ci_high"]


def test_bootstrap_is_deterministic_given_the_seed():
    rng = np.random.default_rng(3)
    clean = rng.uniform(1, 2, size=200)
    triggered = clean * rng.uniform(1.0, 1.5, size=200)
    first = energy_ratio(clean, triggered, n_boot=300, seed=7)
    assert energy_ratio(clean, triggered, n_boot=300, seed=7) == first
    other = energy_ratio(clean, triggered, n_boot=300, seed=8)
    assert other["ratio"] == first["ratio"]
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])


def test_ratio_rejects_unpaired_sets():
    with pytest.raises(ValueError, match="paired"):
        energy_ratio(np.ones(3), np.ones(4))


def test_badnets_square_on_smooth_images_adds_high_frequency_energy():
    images = smooth_images(48, seed=4)
    triggered = build_trigger("badnets", 32, 32).apply(images)
    result = energy_ratio(band_energies(images), band_energies(triggered), n_boot=1000)
    assert result["ratio"] > 1.0
    assert result["ci_low"] > 1.0


# --------------------------------------------------------------------------- table


def test_highfreq_table_and_markdown(tmp_path):
    images = smooth_images(40, seed=5)
    np.save(tmp_path / "clean.npy", dct2(images))
    np.save(tmp_path / "badnets.npy", dct2(build_trigger("badnets", 32, 32).apply(images)))
    np.save(tmp_path / "same.npy", dct2(images))
    entries = [
        ("synthetic", "badnets", tmp_path / "clean.npy", tmp_path / "badnets.npy"),
        ("synthetic", "clean_copy", tmp_path / "clean.npy", tmp_path / "same.npy"),
    ]
    table = highfreq_table(entries, cutoff=1.0, n_boot=200, seed=0, max_samples=30)
    assert list(table.columns) == list(COLUMNS)
    assert list(table["n"]) == [30, 30]
    assert list(table["above_one"]) == [True, False]
    assert table.loc[1, "ratio"] == pytest.approx(1.0)
    assert table.loc[0, "clean_band_energy"] == table.loc[1, "clean_band_energy"]
    again = highfreq_table(entries, cutoff=1.0, n_boot=200, seed=0, max_samples=30)
    pd.testing.assert_frame_equal(table, again)

    text = highfreq_markdown(table, cutoff=1.0, n_boot=200)
    assert text.startswith("# ")
    assert "u/H + v/W >= 1" in text
    assert "BadNets" in text
    assert format_ratio(*table.loc[0, ["ratio", "ci_low", "ci_high"]]) in text


def test_highfreq_table_rejects_sets_of_different_size(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8, 3), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((5, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="same"):
        highfreq_table([("d", "x", tmp_path / "a.npy", tmp_path / "b.npy")])


def test_format_ratio():
    assert format_ratio(1.8312, 1.7890, 1.8801) == "1.83 [1.79, 1.88]"
