"""Type-II 2D DCT of image batches, as in Appendix A of the paper and the authors' code.

The authors transform every channel of every image separately with
``dct(dct(block.T, norm='ortho').T, norm='ortho')`` (``scipy.fftpack``) on uint8 pixel values
(0..255). That is the orthonormal type-II DCT along both spatial axes: coefficient
``D[kx, ky] = w(kx) w(ky) sum_x sum_y g[x, y] cos(pi/N1 (x + 1/2) kx) cos(pi/N2 (y + 1/2) ky)``
with ``w(0) = sqrt(1/N)`` and ``w(k) = sqrt(2/N)`` (scipy's convention; the paper's Appendix A
writes the same transform with the factor 2 of scipy's sum folded into its weights).

Three implementations with one meaning:
- :func:`dct2` / :func:`idct2`: batched ``scipy.fft`` over the spatial axes of an ``N x H x W x C``
  array (the default on the CPU);
- :func:`dct2_torch` / :func:`idct2_torch`: two matrix products with a cached DCT basis, so it
  runs batched on a GPU and inside a training loop;
- :func:`dct2_reference_loop`: the authors' per-image, per-channel ``scipy.fftpack`` loop, kept
  as the test oracle and the benchmark baseline.

torch is imported only by the functions that use it, so jobs that only need the scipy
transform (figures, tables, CPU-only caches) do not pay its two-second import.
"""

from __future__ import annotations

import functools
import math
import os
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft
import scipy.fftpack

from ..io import atomic_path, sha256_array, write_json

if TYPE_CHECKING:  # torch is imported where it is used: the scipy path runs without it
    import torch

SPATIAL_AXES = (1, 2)  # images are N x H x W x C


def _check_batch(images: np.ndarray | torch.Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"expected an N x H x W x C batch, got shape {tuple(images.shape)}")


def dct2(images: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Orthonormal type-II DCT over the spatial axes of an ``N x H x W x C`` batch.

    uint8 input is taken as pixel values 0..255, as the authors did. ``dtype`` is the
    precision of the computation and of the result (float32 by default, float64 for tests).
    """
    _check_batch(images)
    return scipy.fft.dctn(
        np.asarray(images, dtype=dtype), type=2, axes=SPATIAL_AXES, norm="ortho", workers=-1
    )


def idct2(coefficients: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Inverse of :func:`dct2`: pixel values (float) from DCT coefficients."""
    _check_batch(coefficients)
    return scipy.fft.idctn(
        np.asarray(coefficients, dtype=dtype), type=2, axes=SPATIAL_AXES, norm="ortho", workers=-1
    )


@functools.lru_cache(maxsize=32)
def dct_matrix(n: int, dtype: torch.dtype | None = None, device: str = "cpu") -> torch.Tensor:
    """The ``n x n`` orthonormal DCT-II basis ``C`` with ``dct(v) = C @ v`` (rows are frequencies).

    ``dtype`` defaults to float32.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    x = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    basis = torch.cos(math.pi / n * (x + 0.5) * k) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    return basis.to(dtype=dtype, device=device)


def _separable_transform(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    import torch

    _check_batch(x)
    if not x.is_floating_point():
        x = x.float()
    height, width = x.shape[1], x.shape[2]
    rows = dct_matrix(height, x.dtype, str(x.device))
    cols = dct_matrix(width, x.dtype, str(x.device))
    if inverse:
        rows, cols = rows.T, cols.T
    # N x H x W x C -> N x C x H x W, then rows @ image @ cols^T per channel.
    planes = x.permute(0, 3, 1, 2)
    out = torch.matmul(torch.matmul(rows, planes), cols.T)
    return out.permute(0, 2, 3, 1).contiguous()


def dct2_torch(images: torch.Tensor) -> torch.Tensor:
    """Same transform as :func:`dct2` on a torch ``N x H x W x C`` tensor, on its device.

    Integer tensors are converted to float32; float tensors keep their precision.
    """
    return _separable_transform(images, inverse=False)


def idct2_torch(coefficients: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct2_torch`."""
    return _separable_transform(coefficients, inverse=True)


def dct2_reference_loop(images: np.ndarray) -> np.ndarray:
    """The authors' per-image, per-channel ``scipy.fftpack`` loop (float64); the test oracle."""
    _check_batch(images)
    out = np.empty(images.shape, dtype=np.float64)
    for i in range(images.shape[0]):
        for channel in range(images.shape[3]):
            block = images[i, :, :, channel].astype(np.float64)
            out[i, :, :, channel] = scipy.fftpack.dct(
                scipy.fftpack.dct(block.T, norm="ortho").T, norm="ortho"
            )
    return out


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def dct2_batched(images: np.ndarray, device: str = "auto", chunk_size: int = 4096) -> np.ndarray:
    """float32 DCT of an array of any length, on the GPU when ``device`` resolves to CUDA."""
    target = resolve_device(device)
    if target.type != "cpu":
        import torch

    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, images.shape[0], chunk_size):
        chunk = images[start : start + chunk_size]
        if target.type == "cpu":
            out[start : start + chunk_size] = dct2(chunk)
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(chunk)).to(target)
            out[start : start + chunk_size] = dct2_torch(tensor).cpu().numpy()
    return out


def write_dct_cache(
    images: np.ndarray,
    path: str | os.PathLike,
    sidecar: str | os.PathLike,
    device: str = "auto",
    chunk_size: int = 4096,
    extra_meta: dict | None = None,
    progress=None,
) -> dict:
    """Write the float32 DCT of ``images`` to a memory-mappable ``.npy`` file plus a JSON sidecar.

    The array is streamed chunk by chunk into a memory map, so sets larger than memory fit;
    ``progress`` optionally wraps the chunk iterator (a progress bar in the rule's log).
    """
    _check_batch(images)
    target = resolve_device(device)
    starts = range(0, images.shape[0], chunk_size)
    if progress is not None:
        starts = progress(starts, "DCT", total=len(starts))
    with atomic_path(path) as tmp:
        cache = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=images.shape)
        for start in starts:
            chunk = np.asarray(images[start : start + chunk_size])
            cache[start : start + chunk_size] = dct2_batched(chunk, str(target), chunk_size)
        cache.flush()
        checksum = sha256_array(np.asarray(cache))
        del cache
    meta = {
        "dtype": "float32",
        "shape": list(images.shape),
        "layout": "N x H x W x C, orthonormal type-II DCT over H and W of uint8 pixel values",
        "device": str(target),
        "sha256": checksum,
        **(extra_meta or {}),
    }
    write_json(sidecar, meta)
    return meta
