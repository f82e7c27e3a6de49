"""The DCT against scipy.fft.dctn and the authors' per-channel fftpack loop, in numpy and torch."""

import json

import numpy as np
import pytest
import scipy.fft
import torch

from freqbackdoor.frequency import dct


@pytest.mark.parametrize("shape", [(3, 8, 8, 3), (2, 32, 32, 3), (2, 17, 40, 3), (1, 224, 224, 3)])
def test_dct2_matches_scipy_dctn(rng, shape):
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    expected = scipy.fft.dctn(images.astype(np.float64), type=2, axes=(1, 2), norm="ortho")
    np.testing.assert_allclose(dct.dct2(images, dtype=np.float64), expected, rtol=0, atol=1e-9)
    got32 = dct.dct2(images)
    assert got32.dtype == np.float32
    # float32 precision relative to the largest coefficient (the DC term, up to 255 * sqrt(H W))
    assert np.abs(got32 - expected).max() / np.abs(expected).max() < 1e-6


def test_dct2_matches_the_authors_loop(images32):
    np.testing.assert_allclose(
        dct.dct2(images32, dtype=np.float64), dct.dct2_reference_loop(images32), atol=1e-9
    )


def test_dc_coefficient_is_scaled_mean(rng):
    """Orthonormal scaling: D[0, 0] = sqrt(H W) * mean of the channel (Appendix A)."""
    images = rng.integers(0, 256, size=(4, 16, 24, 3), dtype=np.uint8)
    coefficients = dct.dct2(images, dtype=np.float64)
    expected = np.sqrt(16 * 24) * images.astype(np.float64).mean(axis=(1, 2))
    np.testing.assert_allclose(coefficients[:, 0, 0, :], expected, rtol=1e-12)


def test_energy_is_preserved(images32):
    coefficients = dct.dct2(images32, dtype=np.float64)
    np.testing.assert_allclose(
        (coefficients**2).sum(axis=(1, 2)), (images32.astype(np.float64) ** 2).sum(axis=(1, 2))
    )


def test_inverse_recovers_pixels(images32):
    back = dct.idct2(dct.dct2(images32, dtype=np.float64), dtype=np.float64)
    np.testing.assert_allclose(back, images32, atol=1e-9)


@pytest.mark.parametrize("shape", [(4, 32, 32, 3), (2, 20, 36, 3), (1, 224, 224, 3)])
def test_torch_agrees_with_scipy_to_float32_precision(rng, shape):
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    expected = dct.dct2(images, dtype=np.float64)
    got = dct.dct2_torch(torch.from_numpy(images)).numpy()
    assert got.dtype == np.float32
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() / scale < 1e-6
    back = dct.idct2_torch(torch.from_numpy(expected)).numpy()
    np.testing.assert_allclose(back, images, atol=1e-8)


def test_torch_dct_keeps_gradients():
    x = torch.rand(2, 8, 8, 3, dtype=torch.float64, requires_grad=True)
    dct.dct2_torch(x).pow(2).sum().backward()
    # the transform is orthonormal, so d/dx sum(D^2) = 2 x
    torch.testing.assert_close(x.grad, 2 * x.detach())


def test_basis_is_orthonormal():
    for n in (8, 32, 224):
        basis = dct.dct_matrix(n, torch.float64)
        torch.testing.assert_close(basis @ basis.T, torch.eye(n, dtype=torch.float64))


def test_rejects_non_batches():
    with pytest.raises(ValueError, match="N x H x W x C"):
        dct.dct2(np.zeros((32, 32, 3), np.uint8))


def test_resolve_device_auto_is_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert dct.resolve_device("auto").type == expected
    assert dct.resolve_device("cpu").type == "cpu"


def test_write_dct_cache_is_memory_mappable_with_sidecar(tmp_path, rng):
    images = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    out, sidecar = tmp_path / "d.npy", tmp_path / "d.json"
    meta = dct.write_dct_cache(images, out, sidecar, device="cpu", chunk_size=3)
    cached = np.load(out, mmap_mode="r")
    assert isinstance(cached, np.memmap)
    assert cached.dtype == np.float32 and cached.shape == images.shape
    np.testing.assert_allclose(cached, dct.dct2(images), rtol=1e-6, atol=1e-3)
    on_disk = json.loads(sidecar.read_text())
    assert on_disk == meta
    assert on_disk["dtype"] == "float32" and on_disk["shape"] == [10, 32, 32, 3]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_dct2_batched_chunks_agree(rng):
    images = rng.integers(0, 256, size=(11, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        dct.dct2_batched(images, device="cpu", chunk_size=4), dct.dct2(images)
    )
