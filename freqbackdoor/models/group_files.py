"""Files of model groups (the MNTD shadow and target models): one ``.pt`` and a JSON sidecar.

A group is stored as one ``.pt`` file holding ``{parameter name: tensor[K, ...]}``, read back with
``weights_only=True`` and checked key by key against the architecture it is loaded into. :func:`load_model_group_with_sidecar` reads the
architecture, classes, input size, options and count from the group's sidecar, and refuses a
group copied over another's (:func:`~freqbackdoor.models.checkpoints.check_identity`). Groups
are trained by :mod:`freqbackdoor.models.groups`. Importing this module registers MNTD's
architecture, so a group of MNTD models can be rebuilt by name.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device
from ..io import load_weights, read_json, save_torch
from ..mna import mntd  # noqa: F401  (registers MNTD's architecture in MODELS)
from .checkpoints import check_identity, check_state_keys
from .classifier import build_model


def save_model_group(models: list[nn.Module], path: str | os.PathLike) -> None:
    """Write a group's weights to one ``.pt`` file as ``{name: tensor[K, ...]}``, atomically."""
    if not models:
        raise ConfigError(f"{path}: cannot save an empty group of models")
    states = [model.state_dict() for model in models]
    reference = {k: tuple(v.shape) for k, v in states[0].items()}
    for i, state in enumerate(states[1:], start=1):
        if {k: tuple(v.shape) for k, v in state.items()} != reference:
            raise ConfigError(
                f"{path}: model {i} does not have the parameters of model 0; a group shares "
                "one architecture"
            )
    stacked = {
        key: torch.stack([state[key].detach().cpu() for state in states]).contiguous()
        for key in reference
    }
    save_torch(path, stacked)


def load_model_group(
    path: str | os.PathLike,
    architecture: str,
    num_classes: int,
    input_size: int,
    count: int,
    device: str | torch.device = "cpu",
    **options,
) -> list[nn.Module]:
    """Rebuild ``count`` models of ``architecture`` and load a :func:`save_model_group` file.

    ``options`` go to :func:`~freqbackdoor.models.classifier.build_model`. The file is read with
    ``weights_only=True`` and must hold exactly the architecture's parameters, each stacked
    ``count`` times with the architecture's shape; otherwise ``DataError`` names the file and
    the mismatching key or count. The models come back in eval mode on ``device``.
    """
    target = resolve_device(device)
    template = build_model(architecture, num_classes, input_size, **options)
    stacked = load_weights(path, map_location=target, what="model group")
    if not isinstance(stacked, dict) or not all(
        isinstance(v, torch.Tensor) for v in stacked.values()
    ):
        raise DataError(
            f"{path}: expected a dict of stacked tensors, found {type(stacked).__name__}"
        )
    expected = template.state_dict()
    check_state_keys(path, stacked, expected, "model group", f"architecture {architecture}")
    for key, value in expected.items():
        found = tuple(stacked[key].shape)
        if not found or found[0] != count:
            held = found[0] if found else "no"
            raise DataError(f"{path}: {key} holds {held} models, expected a group of {count}")
        if found[1:] != tuple(value.shape):
            raise DataError(
                f"{path}: {key} has per-model shape {found[1:]} but {architecture} with "
                f"{num_classes} classes and input size {input_size} expects {tuple(value.shape)}"
            )
    models = []
    for i in range(count):
        model = template if i == 0 else copy.deepcopy(template)
        model.load_state_dict({key: value[i] for key, value in stacked.items()})
        models.append(model.to(target).eval())
    return models


def load_model_group_with_sidecar(
    path: str | os.PathLike,
    sidecar_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    expect: Mapping[str, Any] | None = None,
) -> tuple[list[nn.Module], dict[str, Any]]:
    """:func:`load_model_group` with the architecture, classes, input size, options and count
    read from the group's JSON sidecar (``architecture``, ``num_classes``, ``size``,
    ``options``, one ``models`` entry per model); returns the models and the sidecar.
    ``expect``: sidecar fields the path implies (dataset, role, kind, group), checked by
    :func:`freqbackdoor.models.checkpoints.check_identity`, so a group copied over another is refused."""
    meta = read_json(sidecar_path)
    check_identity(meta if isinstance(meta, dict) else {}, expect or {}, sidecar_path)
    try:
        spec = (meta["architecture"], int(meta["num_classes"]), int(meta["size"]))
        count, options = len(meta["models"]), dict(meta.get("options", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{sidecar_path}: not a model-group sidecar ({exc!r})") from exc
    return load_model_group(path, *spec, count=count, device=device, **options), meta
