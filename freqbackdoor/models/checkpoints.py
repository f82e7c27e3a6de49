"""Checkpoints of trained models: the weights and a JSON sidecar that says what they are.

A checkpoint is a plain ``state_dict`` plus a JSON sidecar that names the architecture and the
checkpoint's sha256 (:func:`save_checkpoint`); :func:`load_checkpoint` rebuilds the model from
the sidecar and loads the weights with ``weights_only=True``, refusing files that do not match
it. :func:`check_identity` refuses a checkpoint copied over another's, whose sidecar names what
it is, and :func:`check_state_keys` names the keys a file lacks or adds; the files of model
groups (:mod:`freqbackdoor.models.group_files`) are checked with both too. Classifiers and
detectors alike are stored this way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device
from ..io import load_weights, read_json, save_torch, sha256_file, write_json
from .classifier import build_model, count_parameters

#: Sidecar keys written by :func:`save_checkpoint` itself; ``meta`` may not override them.
SIDECAR_KEYS = (
    "architecture",
    "num_classes",
    "input_size",
    "model_options",
    "domain",
    "input_format",
    "parameters",
    "checkpoint",
    "sha256",
    "torch_version",
)


def model_description(model: nn.Module) -> dict[str, Any]:
    """What a sidecar says of a model to rebuild it: ``architecture`` (its registry name),
    ``num_classes``, ``input_size``, ``model_options``, input ``domain`` and ``input_format``,
    and its trainable ``parameters``."""
    architecture = getattr(model, "architecture", None)
    if architecture is None:
        raise ValueError(f"{type(model).__name__} has no 'architecture' name to rebuild it from")
    return {
        "architecture": architecture,
        "num_classes": int(model.num_classes),
        "input_size": int(model.input_size),
        "model_options": dict(getattr(model, "options", {})),
        "domain": getattr(model, "domain", "pixel"),
        "input_format": getattr(
            model,
            "input_format",
            "float32 N x 3 x H x W in [0, 1] (freqbackdoor.models.images_to_tensor)",
        ),
        "parameters": count_parameters(model),
    }


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    sidecar_path: str | os.PathLike,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model``'s state dict to ``path`` and a JSON sidecar describing it; both atomic.

    The sidecar holds what :func:`load_checkpoint` needs to rebuild and verify the model
    (``architecture``, ``num_classes``, ``input_size``, ``sha256`` of the checkpoint file) plus
    ``domain`` ("pixel": the model reads images, not spectra), ``input_format``, ``parameters``,
    ``checkpoint`` (file name), ``torch_version`` and every key of ``meta`` (training settings,
    seed, metrics...). Returns the sidecar dict.
    """
    meta = dict(meta or {})
    clash = sorted(set(meta) & set(SIDECAR_KEYS))
    if clash:
        raise ValueError(f"meta may not set the sidecar's own key(s) {', '.join(clash)}")
    description = model_description(model)  # before writing: a nameless model is refused
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = save_torch(path, state)
    sidecar = {
        **meta,
        **description,
        "checkpoint": os.path.basename(os.fspath(path)),
        "sha256": digest,
        "torch_version": torch.__version__,
    }
    write_json(sidecar_path, sidecar)
    return sidecar


def check_state_keys(
    path: str | os.PathLike, state: Mapping, expected: Mapping, what: str, model: str
) -> None:
    """``DataError`` naming ``path`` and the keys when ``state`` lacks or adds to ``expected``'s.

    ``what`` names the file's kind (``checkpoint``, ``model group``), ``model`` what it is
    loaded into; shapes are the caller's to check.
    """
    absent = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if absent or extra:
        parts = []
        if absent:
            parts.append(f"lacks {', '.join(absent)}")
        if extra:
            parts.append(f"has unexpected {', '.join(extra)}")
        raise DataError(f"{path}: {what} {' and '.join(parts)} for {model}")


def check_identity(
    meta: Mapping[str, Any], expect: Mapping[str, Any], sidecar_path: str | os.PathLike
) -> None:
    """``DataError`` unless every field of ``expect`` has that value in the sidecar ``meta``.

    A checkpoint must be what its path and the config say it is: a detector copied over
    another's file (sha256 and shapes can both agree with its own sidecar) is caught here by
    the sidecar's ``checkpoint`` name, ``dataset``, ``body``, ``domain`` and the like. The
    message names the file and the first field that differs.
    """
    for field, wanted in expect.items():
        actual = meta.get(field)
        if actual != wanted:
            raise DataError(
                f"{sidecar_path}: {field} is {actual!r} but this path and the config expect "
                f"{wanted!r}: copied or renamed from another checkpoint? (the pipeline retrains "
                "one whose .pt and .json are deleted)"
            )


def load_checkpoint(
    path: str | os.PathLike,
    sidecar_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    domain: str | None = "pixel",
    expect: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a sidecar describes and load ``path`` into it: ``(model, sidecar)``.

    The checkpoint must match the sidecar's sha256 and hold exactly the architecture's
    parameters with the same shapes; otherwise ``DataError`` names the file and the mismatch.
    Weights are read with ``torch.load(weights_only=True)``, so a checkpoint cannot run code.
    The model comes back in eval mode on ``device`` (``"auto"`` allowed). ``domain`` is the
    input domain the caller expects (``"pixel"`` for classifiers, ``"dct"`` or ``"pixel"`` for
    detectors; ``None`` accepts any). ``expect`` maps sidecar fields to the values the caller's
    path and config imply (:func:`check_identity`); the pipeline passes at least the file name
    as ``checkpoint``.
    """
    target = resolve_device(device)
    meta = read_json(sidecar_path)
    if not isinstance(meta, dict):
        raise DataError(f"{sidecar_path}: not a checkpoint sidecar (expected a JSON object)")
    check_identity(meta, expect or {}, sidecar_path)
    missing = [k for k in ("architecture", "num_classes", "input_size", "sha256") if k not in meta]
    if missing:
        raise DataError(f"{sidecar_path}: checkpoint sidecar lacks {', '.join(missing)}")
    if domain is not None and meta.get("domain", "pixel") != domain:
        raise DataError(
            f"{sidecar_path}: domain {meta.get('domain', 'pixel')!r} is not the expected {domain!r}"
        )
    try:
        model = build_model(
            meta["architecture"],
            int(meta["num_classes"]),
            int(meta["input_size"]),
            **meta.get("model_options", {}),
        )
    except ConfigError as exc:
        raise DataError(f"{sidecar_path}: {exc}") from exc
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise DataError(f"cannot read checkpoint {path}: {exc}") from exc
    if digest != meta["sha256"]:
        raise DataError(
            f"{path}: sha256 {digest} differs from {meta['sha256']} recorded in {sidecar_path} "
            "(the checkpoint was changed or the sidecar belongs to another file)"
        )
    state = load_weights(path, map_location=target)
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict, found {type(state).__name__}")
    expected = model.state_dict()
    check_state_keys(
        path, state, expected, "checkpoint", f"the sidecar's architecture {meta['architecture']}"
    )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise DataError(
                f"{path}: layer {key} has shape {tuple(state[key].shape)} but the sidecar's "
                f"architecture expects {tuple(value.shape)}"
            )
    model.load_state_dict(state)
    model.to(target).eval()
    return model, meta
