"""Screening users' data: score every image in a folder or an ``.npy`` array with a detector.

This is the pipeline's Section-4 detector used as a tool: a researcher points it at images of
unknown origin and gets, per image, the detector's probability that a trigger is present and
whether it crosses the threshold. Unreadable files are reported by name and the rest are still
scored, so one corrupt file does not hide the verdict on a whole folder.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..authors.models import (
    AUTHORS_DETECTORS,
    AUTHORS_MODELS,
    authors_meta,
    authors_model_file,
    convert_keras_model,
)
from ..data.datasets import IMAGE_EXTENSIONS, image_files, load_image
from ..errors import DataError
from ..frequency.dct import resolve_device
from ..io import load_npy
from ..models.checkpoints import load_checkpoint, model_description
from .detector import Detector, detector_scores, resize_images

COLUMNS = ["file", "score", "flagged", "error"]
DEFAULT_THRESHOLD = 0.5  # the paper's fixed threshold, used when no calibration is recorded
AUTHORS_FOLDER_ENV = "FREQBACKDOOR_AUTHORS_MODELS"
DEFAULT_AUTHORS_FOLDER = "resources/raw/authors_models"  # the pipeline's, with its default raw_dir


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Every path under ``folder`` named like an image (recursively, sorted; hidden files and
    macOS ``__MACOSX`` skipped, as an ``imagefolder`` dataset reads them).

    Paths that are not regular files (a dangling or looping symbolic link, a folder named
    ``x.png``) are listed too, so that :func:`screen_files` gives each a row saying why it was
    not scored instead of dropping it without a word.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = set(image_files(folder, recursive=True))
    for path in folder.rglob("*"):
        hidden = any(p.startswith(".") or p == "__MACOSX" for p in path.relative_to(folder).parts)
        if not hidden and path.suffix.lower() in IMAGE_EXTENSIONS:
            files.add(path)
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return sorted(files)


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` is no image file to read (a dangling or looping link, a folder), else None."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_symlink():
        loop = f"{path}: a symbolic link loop, not an image file"
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python before 3.13 reports a loop so
            return loop
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return loop
            return f"{path}: a dangling symbolic link (its target is missing)"
    if path.is_dir():
        return f"{path}: a folder named like an image, not an image file"
    return f"{path}: not a regular file"


def pipeline_detector(results: str | os.PathLike, dataset: str, upgraded: bool = False) -> Path:
    """The checkpoint the pipeline trained for ``dataset``: its Section-4 DCT detector, or with
    ``upgraded`` the smooth-trigger upgrade of Section 5.4. Errors list what exists."""
    results = Path(results)
    if upgraded:
        path = results / "smooth" / dataset / "detector_smooth.pt"
        if not path.is_file():
            raise DataError(f"{path}: no upgraded detector (run the pipeline's Section 5 first)")
        return path
    folder = results / "detectors" / dataset
    found = sorted(folder.glob("*_dct.pt"))
    if not found:
        known = sorted(p.name for p in (results / "detectors").glob("*") if p.is_dir())
        raise DataError(
            f"{folder}: no DCT detector checkpoint; datasets with detectors: "
            f"{', '.join(known) or 'none (run the pipeline first)'}"
        )
    if len(found) == 1:
        return found[0]
    preferred = folder / "cnn6_kmax128_dct.pt"  # Table 1's detector
    if preferred in found:
        return preferred
    raise DataError(
        f"{folder}: several detectors ({', '.join(p.name for p in found)}); name one with --detector"
    )


def load_detector(
    path: str | os.PathLike, device: str = "auto", dataset: str | None = None
) -> tuple[Detector, dict[str, Any]]:
    """A detector checkpoint (``.pt``) and its sidecar (the ``.json`` beside it), verified.

    A checkpoint of another kind of model (a classifier, say) raises ``DataError`` naming it;
    so does one whose sidecar describes another file (a checkpoint copied over this one), or,
    with ``dataset``, one trained on another dataset.
    """
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".pt")
    sidecar = path.with_suffix(".json")
    for file in (path, sidecar):
        if not file.is_file():
            raise DataError(f"{file}: no such file (a detector is a .pt with its .json sidecar)")
    expect = {"checkpoint": path.name, **({"dataset": dataset} if dataset else {})}
    model, meta = load_checkpoint(path, sidecar, device=device, domain=None, expect=expect)
    if not isinstance(model, Detector):
        raise DataError(
            f"{path}: a {meta['architecture']!r} checkpoint, not a detector (architecture 'detector')"
        )
    return model, meta


def is_authors_detector(name: str) -> bool:
    """Whether ``--detector name`` means one of the authors' published detectors."""
    return name.replace("-", "_") in AUTHORS_DETECTORS


def authors_detector(
    name: str, folder: str | os.PathLike | None = None, download: bool = True, device: str = "auto"
) -> tuple[Detector, dict[str, Any]]:
    """One of the authors' published detectors, converted from their Keras file, and its sidecar.

    The file is looked for in ``folder``, else the folder named by ``FREQBACKDOOR_AUTHORS_MODELS``,
    else the pipeline's ``resources/raw/authors_models``; where it is not there it is downloaded
    into that folder (``download``) and accepted only with the published sha256. The detector
    reads raw DCT coefficients (no standardisation), as the authors fed it.
    """
    key = name.replace("-", "_")
    if key not in AUTHORS_DETECTORS:
        known = ", ".join(AUTHORS_MODELS[n].cli_name for n in AUTHORS_DETECTORS)
        raise DataError(f"{name!r} is not one of the authors' detectors ({known})")
    folder = folder or os.environ.get(AUTHORS_FOLDER_ENV) or DEFAULT_AUTHORS_FOLDER
    source = authors_model_file(key, folder, download=download)  # verified by sha256
    model = convert_keras_model(source, key).to(resolve_device(device)).eval()
    meta = {**authors_meta(key), **model_description(model), "checkpoint": source.name}
    return model, meta


def choose_threshold(meta: dict[str, Any], threshold: float | None) -> tuple[float, str]:
    """The threshold to flag at and where it came from: the caller's, else the calibrated one
    recorded in the sidecar (held-out clean images at the configured FPR), else the one the
    sidecar records as its authors' (the published detectors), else 0.5."""
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise DataError(f"threshold {threshold} is not a probability in [0, 1]")
        return float(threshold), "given"
    calibrated = (meta.get("calibration") or {}).get("threshold")
    if calibrated is not None:
        fpr = meta["calibration"].get("target_fpr")
        return float(calibrated), f"calibrated (clean FPR {fpr})"
    if meta.get("threshold") is not None:
        return float(meta["threshold"]), "the authors': the larger softmax output"
    return DEFAULT_THRESHOLD, "default (the paper's 0.5)"


def _scored(names: Sequence[str], scores: np.ndarray, threshold: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"file": list(names), "score": scores, "flagged": scores >= threshold, "error": ""}
    )


def screen_array(
    model: Detector,
    images: np.ndarray,
    threshold: float,
    name: str = "array",
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Scores of a uint8 ``N x H x W x 3`` array, one row per image named ``name[i]``; an image
    is flagged when its score is ``>= threshold``, as in the pipeline's metrics.

    Images of another size than the detector's input are resized (bilinear, antialiased).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(
            f"{name}: expected uint8 N x H x W x 3 images, got {images.dtype} {images.shape}"
        )
    if images.shape[1] != images.shape[2]:
        raise DataError(f"{name}: images must be square, got {images.shape[1]}x{images.shape[2]}")
    if images.shape[1] != model.input_size:
        images = resize_images(images, model.input_size)
    scores = detector_scores(model, images, batch_size=batch_size)
    return _scored([f"{name}[{i}]" for i in range(len(images))], scores, threshold)


def screen_files(
    model: Detector,
    files: Sequence[str | os.PathLike],
    threshold: float,
    resize: str = "stretch",
    chunk: int = 512,
    progress: Callable[..., Iterable] | None = None,
) -> pd.DataFrame:
    """Scores of image files, read ``chunk`` at a time at the detector's input size.

    A file that cannot be decoded, and a path that is no file (:func:`not_a_file`), gets a row
    with no score and the error naming it; every other file is scored. ``resize`` is ``stretch`` or ``center_crop`` (see ``load_image``).
    """
    rows = []
    starts = range(0, len(files), chunk)
    if progress is not None:
        starts = progress(starts, desc="screening", total=len(starts))
    for start in starts:
        names, images, failed = [], [], []
        for file in files[start : start + chunk]:
            reason = not_a_file(file)
            if reason is not None:
                failed.append({"file": str(file), "error": reason})
                continue
            try:
                images.append(load_image(file, model.input_size, resize))
                names.append(str(file))
            except DataError as exc:
                failed.append({"file": str(file), "error": str(exc)})
        if images:
            scores = detector_scores(model, np.stack(images))
            rows.append(_scored(names, scores, threshold))
        if failed:
            rows.append(pd.DataFrame(failed).assign(score=np.nan, flagged=pd.NA))
    table = pd.concat(rows, ignore_index=True)[COLUMNS]
    order = {str(f): i for i, f in enumerate(files)}
    return table.sort_values("file", key=lambda s: s.map(order), kind="stable").reset_index(
        drop=True
    )


def screen_path(
    model: Detector,
    path: str | os.PathLike,
    threshold: float,
    resize: str = "stretch",
    progress: Callable[..., Iterable] | None = None,
) -> pd.DataFrame:
    """Screen a folder of images or an ``.npy`` array (file, score, flagged, error per image)."""
    path = Path(path)
    if path.suffix == ".npy":
        return screen_array(model, load_npy(path), threshold, name=path.name)
    return screen_files(model, find_images(path), threshold, resize, progress=progress)


def screening_summary(
    table: pd.DataFrame, threshold: float, threshold_source: str, detector: str, meta: dict
) -> dict[str, Any]:
    """Counts, the flagged share and score quantiles of a screening table, with its detector."""
    scored = table["score"].dropna()
    flagged = int(table["flagged"].fillna(False).astype(bool).sum())
    quantiles = scored.quantile([0.0, 0.5, 0.9, 1.0]) if len(scored) else None
    return {
        "detector": detector,
        "detector_dataset": meta.get("dataset"),
        "detector_body": meta.get("model_options", {}).get("body"),
        "domain": meta.get("domain"),
        "input_size": meta.get("input_size"),
        "threshold": threshold,
        "threshold_source": threshold_source,
        "images": int(len(table)),
        "scored": int(len(scored)),
        "unreadable": int(len(table) - len(scored)),
        "flagged": flagged,
        "flagged_share": flagged / len(scored) if len(scored) else None,
        "score_quantiles": None
        if quantiles is None
        else {f"q{int(q * 100)}": float(v) for q, v in quantiles.items()},
    }


def summary_text(summary: dict[str, Any]) -> str:
    """A few human-readable lines of :func:`screening_summary`."""
    share = summary["flagged_share"]
    lines = [
        f"detector   {summary['detector']} ({summary['detector_body']}, {summary['domain']} "
        f"domain, {summary['input_size']} px, trained on {summary['detector_dataset']})",
        f"threshold  {summary['threshold']:.4f} ({summary['threshold_source']})",
        f"images     {summary['images']}: {summary['scored']} scored, "
        f"{summary['unreadable']} unreadable",
        f"flagged    {summary['flagged']}"
        + ("" if share is None else f" ({100 * share:.1f}% of those scored)"),
    ]
    if summary["score_quantiles"]:
        q = summary["score_quantiles"]
        lines.append(
            f"scores     min {q['q0']:.3f}, median {q['q50']:.3f}, 90th pct {q['q90']:.3f}, "
            f"max {q['q100']:.3f}"
        )
    return "\n".join(lines)
