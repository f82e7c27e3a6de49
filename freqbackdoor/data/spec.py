"""A dataset's config block as the builders read it, and what every builder gets and returns.

Each source's builder gets a :class:`BuildContext` (the dataset's name, config, output size
and seed; it also draws the seeded ``max_train``/``max_test`` subsets) and returns a
:class:`BuiltDataset` (arrays, class names, provenance). The ``spec_*`` readers check one key
of ``datasets.<name>`` and raise a :class:`~freqbackdoor.errors.ConfigError` that names it.
Shared by every source module, so it lives apart from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "test")
ARRAY_KEYS: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass
class BuildContext:
    """What every builder needs: the dataset's name, config, output size and seed."""

    name: str
    spec: dict
    size: int
    seed: int

    def cap_indices(self, split: str, n: int) -> np.ndarray:
        """Sorted indices of a seeded subset of ``n`` items when ``max_<split>`` caps them."""
        cap = spec_int(self.name, self.spec, f"max_{split}", None, minimum=1)
        if cap is None or n <= cap:
            return np.arange(n)
        rng = np.random.default_rng((self.seed, 0x6361, SPLITS.index(split)))
        return np.sort(rng.choice(n, size=cap, replace=False))


@dataclasses.dataclass
class BuiltDataset:
    """A builder's result: the arrays, the class names and what to record as provenance."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    provenance: dict[str, Any]


def spec_int(name: str, spec: dict, key: str, default: int | None, minimum: int) -> int | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.{key} must be an integer >= {minimum}, "
            f"got {value!r}"
        )
    return int(value)


def spec_fraction(name: str, spec: dict, key: str, default: float, allow_one: bool = True) -> float:
    value = spec.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (0 < value < 1 or (allow_one and value == 1)):
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.{key} must be a number in {interval}, got {value!r}"
        )
    return float(value)


def spec_string(name: str, spec: dict, key: str, default: str | None = None) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.{key} must be a non-empty string, got {value!r}"
        )
    return value


def spec_choice(name: str, spec: dict, key: str, default: str, choices: Sequence[str]) -> str:
    value = spec.get(key, default)
    if value not in choices:
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.{key} is {value!r}; one of {', '.join(choices)}"
        )
    return value
