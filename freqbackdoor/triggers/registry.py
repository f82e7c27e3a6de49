"""Backdoor triggers: one record per trigger that holds everything needed to apply it.

A :class:`Trigger` is a pattern, a mask and an insertion mode. Images are uint8
``N x H x W x 3`` batches; insertion works on floats in [0, 1] as the authors' evaluation code
does, and the result is rounded back to uint8 (the authors truncate with ``astype(uint8)``,
which turns float error into stray -1 steps; we round).

Insertion modes (``x`` image, ``p`` pattern, ``m`` mask, ``w`` weight, all in [0, 1]):

- ``replace``: ``x * (1 - m) + p * m`` (BadNets' white square, l0-invisible);
- ``additive``: ``clip(x + w * m * p, 0, 1)`` (Trojan, Nature, l2-invisible and the authors'
  Blend, which adds a cartoon pre-scaled by 0.2 and clips);
- ``blend``: ``x * (1 - w m) + w m p`` (Chen et al.'s convex blend, offered as an option);
- ``generator``: ``G(x)``, a small image-to-image network run on every image (the GAN-based
  trigger, :mod:`freqbackdoor.triggers.gan`); pattern and mask are zeros and only give the size;
- ``normalise``: ``M(x + w * m * p)``, where ``M`` min-max scales each image, over all its
  pixels and channels together, to [0, 1] (the authors insert their smooth trigger, Section 5
  and :mod:`freqbackdoor.triggers.smooth`, as ``x + v`` and normalise the whole image). A constant
  image has no range to stretch and is left as it is, clipped to [0, 1].

A generator trigger keeps its network's weights in the same ``.npz`` as every other trigger
(arrays ``generator/<parameter name>``; the architecture's registered name and keyword arguments
in the JSON ``fields``). Loading rebuilds the architecture from a registry of known classes
(:func:`register_generator`) and copies plain arrays into it, so reading a trigger file never
unpickles or executes anything from the file.

New triggers register a builder with :func:`register_trigger`; the workflow looks them up by
the name used in the config. Builders living in other modules (:data:`BUILTIN_MODULES`) are
imported on the first registry look-up, so every look-up sees them all while loading and
inserting a pattern trigger needs neither them nor torch.

The builders themselves live by subject: the hand-drawn pattern triggers (BadNets, Blend,
Nature) in :mod:`freqbackdoor.triggers.patterns`, the optimised ones in
:mod:`freqbackdoor.triggers.trojannn` and :mod:`freqbackdoor.triggers.invisible`, the GAN-based
one in :mod:`freqbackdoor.triggers.gan`, the smooth trigger in
:mod:`freqbackdoor.triggers.smooth` and its naive baselines in
:mod:`freqbackdoor.triggers.naive_smooth`; the images triggers are drawn from, and trigger
previews, in :mod:`freqbackdoor.triggers.images`. This module holds only what all of them and
the workflow share: the record, its file format and the registry.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io import save_npz

MODES = ("replace", "additive", "blend", "generator", "normalise")
GENERATOR_PREFIX = "generator/"
# Pixels (images x height x width) per forward pass of a generator trigger: bounds the memory of
# the full-resolution activations (about 130 MB per 16-channel layer at this budget).
GENERATOR_PIXELS_PER_BATCH = 1 << 21

GeneratorFactory = Callable[..., Any]
_GENERATORS: dict[str, GeneratorFactory] = {}


def register_generator(arch: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Register a ``torch.nn.Module`` class (or factory) as generator architecture ``arch``.

    The factory is called with the JSON-able keyword arguments stored in a trigger file; the
    module maps a float ``N x 3 x H x W`` batch in [0, 1] to one of the same shape. Only
    registered architectures can be loaded, which is what keeps loading free of pickle.
    """

    def decorator(factory: GeneratorFactory) -> GeneratorFactory:
        if arch in _GENERATORS:
            raise ValueError(f"generator architecture {arch!r} is registered twice")
        _GENERATORS[arch] = factory
        return factory

    return decorator


@dataclasses.dataclass
class GeneratorWeights:
    """A generator network as plain data: architecture name, its keyword arguments, its weights.

    ``state`` maps every entry of the module's ``state_dict`` to a float32 numpy array, which is
    what goes into the ``.npz``; :meth:`build` turns it back into a module.
    """

    arch: str
    config: dict[str, Any]
    state: dict[str, np.ndarray]

    @classmethod
    def from_module(cls, arch: str, config: dict[str, Any], module: Any) -> GeneratorWeights:
        """Capture a trained module's weights (moved to the CPU, float32)."""
        state = {
            key: value.detach().to("cpu", dtype=_torch().float32).numpy().copy()
            for key, value in module.state_dict().items()
        }
        return cls(arch=arch, config=dict(config), state=state)

    def build(self, device: Any = "cpu") -> Any:
        """The module in eval mode on ``device``; ``ValueError`` if the weights do not fit it."""
        torch = _torch()
        _load_builtins()
        factory = _GENERATORS.get(self.arch)
        if factory is None:
            raise ValueError(
                f"unknown generator architecture {self.arch!r}; known: {', '.join(_GENERATORS)}"
            )
        if not isinstance(self.config, dict):
            raise ValueError(f"generator config must be a mapping, got {self.config!r}")
        try:
            module = factory(**self.config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"generator {self.arch!r} with config {self.config}: {exc}") from exc
        expected = module.state_dict()
        missing = sorted(set(expected) - set(self.state))
        unexpected = sorted(set(self.state) - set(expected))
        wrong = [
            f"{key}: {tuple(self.state[key].shape)} instead of {tuple(expected[key].shape)}"
            for key in expected
            if key in self.state and tuple(self.state[key].shape) != tuple(expected[key].shape)
        ]
        if missing or unexpected or wrong:
            problems = []
            if missing:
                problems.append(f"missing weights {missing}")
            if unexpected:
                problems.append(f"unexpected weights {unexpected}")
            if wrong:
                problems.append(f"wrong shapes {wrong}")
            raise ValueError(
                f"generator weights do not fit architecture {self.arch!r} {self.config}: "
                + "; ".join(problems)
            )
        module.load_state_dict(
            {
                key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
                for key, value in self.state.items()
            }
        )
        return module.to(device).eval()


def _torch():
    """torch, imported on first use so that pattern-only triggers do not pay for it."""
    import torch

    return torch


@dataclasses.dataclass
class Trigger:
    """A trigger ready to stamp onto a batch: float32 ``H x W x 3`` pattern and mask in [0, 1].

    Generator triggers (``mode="generator"``) carry :class:`GeneratorWeights` instead; their
    pattern and mask are zeros of the image size. ``device`` is where a generator runs (the
    CPU unless set, ``"auto"`` picks CUDA when present); it is not saved with the trigger.
    """

    name: str
    pattern: np.ndarray
    mask: np.ndarray
    mode: str
    weight: float = 1.0
    target_label: int = 0
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    generator: GeneratorWeights | None = None
    device: str = dataclasses.field(default="cpu", compare=False)
    _modules: dict[str, Any] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"trigger {self.name!r}: unknown mode {self.mode!r}; one of {MODES}")
        if (self.mode == "generator") != (self.generator is not None):
            raise ValueError(
                f"trigger {self.name!r}: mode 'generator' needs generator weights and only it "
                f"may carry them (mode {self.mode!r}, generator "
                f"{'given' if self.generator is not None else 'missing'})"
            )
        self.pattern = np.asarray(self.pattern, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=np.float32)
        if self.pattern.ndim != 3 or self.pattern.shape[2] != 3:
            raise ValueError(
                f"trigger {self.name!r}: pattern must be H x W x 3, got {self.pattern.shape}"
            )
        if self.mask.shape != self.pattern.shape:
            raise ValueError(
                f"trigger {self.name!r}: mask shape {self.mask.shape} != pattern shape {self.pattern.shape}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.pattern.shape[0], self.pattern.shape[1]

    def apply_float(self, images: np.ndarray, device: str | None = None) -> np.ndarray:
        """Insert the trigger into float images in [0, 1] (``N x H x W x 3``); returns float32.

        ``device`` only matters for generator triggers (default: the trigger's ``device``).
        """
        if images.shape[1:3] != self.shape:
            raise ValueError(
                f"trigger {self.name!r} is {self.shape[0]}x{self.shape[1]} but the images are "
                f"{images.shape[1]}x{images.shape[2]}"
            )
        x = np.asarray(images, dtype=np.float32)
        if self.mode == "generator":
            return self._run_generator(x, device)
        if self.mode == "replace":
            out = x * (1.0 - self.mask) + self.pattern * self.mask
        elif self.mode == "additive":
            out = x + (self.weight * self.mask) * self.pattern
        elif self.mode == "normalise":
            out = normalise_images(x + (self.weight * self.mask) * self.pattern)
        else:  # blend
            alpha = self.weight * self.mask
            out = x * (1.0 - alpha) + alpha * self.pattern
        return np.clip(out, 0.0, 1.0, out=out)

    def generator_module(self, device: str | None = None) -> Any:
        """The generator as a torch module in eval mode on ``device`` (built once per device)."""
        if self.generator is None:
            raise ValueError(f"trigger {self.name!r} (mode {self.mode!r}) has no generator")
        from ..frequency.dct import resolve_device

        target = str(resolve_device(device or self.device))
        if target not in self._modules:
            self._modules[target] = self.generator.build(target)
        return self._modules[target]

    def _run_generator(self, images: np.ndarray, device: str | None) -> np.ndarray:
        """``G(x)`` for a float NHWC batch, in chunks of at most GENERATOR_PIXELS_PER_BATCH."""
        torch = _torch()
        module = self.generator_module(device)
        target = next(module.parameters()).device
        height, width = images.shape[1:3]
        step = max(1, GENERATOR_PIXELS_PER_BATCH // (height * width))
        out = np.empty(images.shape, dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, images.shape[0], step):
                chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + step]))
                result = module(chunk.to(target).permute(0, 3, 1, 2))
                out[start : start + step] = result.permute(0, 2, 3, 1).float().cpu().numpy()
        return np.clip(out, 0.0, 1.0, out=out)

    def apply(
        self, images: np.ndarray, chunk_size: int = 2048, device: str | None = None
    ) -> np.ndarray:
        """Insert the trigger into a uint8 batch, chunk by chunk to bound memory; returns uint8."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(
                f"expected uint8 N x H x W x 3 images, got {images.dtype} {tuple(images.shape)}"
            )
        out = np.empty(images.shape, dtype=np.uint8)
        for start in range(0, images.shape[0], chunk_size):
            chunk = np.asarray(images[start : start + chunk_size], dtype=np.float32) / 255.0
            out[start : start + chunk_size] = to_uint8(self.apply_float(chunk, device))
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the trigger as an ``.npz`` (arrays plus JSON-able fields), atomically.

        A generator's weights go in as arrays ``generator/<name>`` and its architecture as a
        ``generator`` entry of the fields; pattern-only triggers keep the original layout.
        """
        fields: dict[str, Any] = {
            "name": self.name,
            "mode": self.mode,
            "weight": self.weight,
            "target_label": self.target_label,
            "meta": self.meta,
        }
        arrays = {"pattern": self.pattern, "mask": self.mask}
        if self.generator is not None:
            fields["generator"] = {"arch": self.generator.arch, "config": self.generator.config}
            for key, value in self.generator.state.items():
                arrays[GENERATOR_PREFIX + key] = np.asarray(value, dtype=np.float32)
        save_npz(path, fields=np.array(json.dumps(fields)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trigger:
        """Read a trigger written by :meth:`save`; a bad file raises ``DataError`` naming it.

        Nothing in the file is executed: arrays are read with ``allow_pickle=False`` and a
        generator is rebuilt from its registered architecture, then checked weight by weight.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = json.loads(str(data["fields"]))
                if not isinstance(fields, dict):
                    raise ValueError("fields are not a JSON object")
                spec = fields.pop("generator", None)
                generator = None
                if spec is not None:
                    if not isinstance(spec, dict) or set(spec) != {"arch", "config"}:
                        raise ValueError(f"malformed generator entry {spec!r}")
                    state = {
                        key[len(GENERATOR_PREFIX) :]: data[key]
                        for key in data.files
                        if key.startswith(GENERATOR_PREFIX)
                    }
                    generator = GeneratorWeights(spec["arch"], spec["config"], state)
                trigger = cls(
                    pattern=data["pattern"], mask=data["mask"], generator=generator, **fields
                )
            if generator is not None:
                # Built now so that weights that do not fit fail here, naming the file.
                trigger._modules["cpu"] = generator.build("cpu")
            return trigger
        except (OSError, ValueError, KeyError, TypeError, ConfigError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read trigger file {path}: {exc}") from exc


def normalise_images(images: np.ndarray) -> np.ndarray:
    """Min-max scale every image of a float ``N x H x W x C`` batch to [0, 1], in float32.

    Each image's minimum and maximum are taken over all its pixels and channels together, so
    the colour balance is kept. A constant image (no range) is left unchanged, clipped to
    [0, 1]: the same rule as :func:`freqbackdoor.triggers.filters.minmax`, so both agree everywhere.
    """
    x = np.asarray(images, dtype=np.float32)
    flat = x.reshape(x.shape[0], -1)
    low = flat.min(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    span = flat.max(axis=1).reshape(low.shape) - low
    scaled = (x - low) / np.where(span > 0, span, np.float32(1.0))
    return np.clip(np.where(span > 0, scaled, x), 0.0, 1.0).astype(np.float32, copy=False)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 pixel values, rounding to nearest."""
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- registry


@dataclasses.dataclass
class TriggerContext:
    """What an optimised or learned trigger is built from (the workflow fills in what it needs).

    ``model`` is the dataset's reference classifier (eval mode, on ``device``; float NCHW input
    in [0, 1], logits out); ``images``/``labels`` a uint8 ``N x H x W x 3`` sample of the
    training set; ``seed`` seeds every random draw of the builder.
    """

    model: Any = None
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    device: str = "cpu"
    seed: int = 0


TriggerBuilder = Callable[[int, int, dict, TriggerContext], Trigger]
NEEDS = ("model", "images")
_REGISTRY: dict[str, TriggerBuilder] = {}
_DOCS: dict[str, str] = {}
_NEEDS: dict[str, tuple[str, ...]] = {}
_FAMILIES: set[str] = set()


def register_trigger(
    name: str, source: str, needs: tuple[str, ...] = (), family: bool = False
) -> Callable[[TriggerBuilder], TriggerBuilder]:
    """Register ``builder(height, width, options, context) -> Trigger`` under ``name``.

    ``name`` is the trigger's config key; ``source`` cites the paper it comes from (shown in
    docs/triggers.md and in the trigger's sidecar); ``needs`` lists what the builder reads from its
    :class:`TriggerContext` (``model``, ``images``), so the workflow knows which inputs to give.
    A ``family`` builder also builds every config name ``<name>_<variant>`` (the naive low-pass
    baselines ``lowpass_noise1``, ``lowpass_astronaut``, ... are variants of ``lowpass``), each
    with its own options.
    """
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"trigger {name!r}: unknown needs {sorted(unknown)}; known: {NEEDS}")

    def decorator(builder: TriggerBuilder) -> TriggerBuilder:
        if name in _REGISTRY:
            raise ValueError(f"trigger {name!r} is registered twice")
        _REGISTRY[name] = builder
        _DOCS[name] = source
        _NEEDS[name] = tuple(needs)
        if family:
            _FAMILIES.add(name)
        return builder

    return decorator


def trigger_builder(name: str) -> str:
    """The registered builder of config trigger ``name``: itself, or its family's.

    ``lowpass_noise1`` -> ``lowpass``; an unknown name raises ``ConfigError`` listing the
    registered ones.
    """
    _load_builtins()
    if name in _REGISTRY:
        return name
    family = name.split("_", 1)[0]
    if family in _FAMILIES and name != family:
        return family
    _check_registered(name)
    return name


def trigger_needs(name: str) -> tuple[str, ...]:
    """What trigger ``name`` is built from: a subset of ``("model", "images")``."""
    return _NEEDS[trigger_builder(name)]


def _check_registered(name: str) -> None:
    _load_builtins()
    if name not in _REGISTRY:
        families = ", ".join(f"{f}_<variant>" for f in sorted(_FAMILIES))
        raise ConfigError(
            f"unknown trigger {name!r}; registered triggers: {', '.join(available_triggers())}"
            + (f" (and {families})" if families else "")
        )


def available_triggers() -> tuple[str, ...]:
    """Names of every registered trigger."""
    _load_builtins()
    return tuple(_REGISTRY)


def trigger_source(name: str) -> str:
    """The citation registered with trigger ``name`` (or its family)."""
    return _DOCS[trigger_builder(name)]


def build_trigger(
    name: str,
    height: int,
    width: int,
    options: dict | None = None,
    context: TriggerContext | None = None,
) -> Trigger:
    """Build trigger ``name`` for ``height x width`` images from its config ``options``.

    A family variant (``lowpass_noise1``) is built by its family's builder and named ``name``.
    """
    builder = trigger_builder(name)
    context = context or TriggerContext()
    missing = [need for need in _NEEDS[builder] if getattr(context, need) is None]
    if missing:
        raise ConfigError(f"trigger {name!r} is built from {', '.join(missing)}; none was given")
    trigger = _REGISTRY[builder](height, width, dict(options or {}), context)
    trigger.meta.setdefault("source", _DOCS[builder])
    if builder != name:
        trigger.name = name
        trigger.meta["builder"] = builder
    return trigger


def merge_options(options: dict, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Merge ``options`` over ``defaults``; an unknown key raises ``ConfigError`` naming it."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(
            f"triggers.{name}: unknown option(s) {', '.join(unknown)}; known: {', '.join(defaults)}"
        )
    return {**defaults, **options}


def scaled_length(pixels_at_32: float, size: int) -> int:
    """A length given for 32-px images, scaled linearly to ``size`` (at least 1 px when > 0)."""
    if pixels_at_32 <= 0:
        return 0
    return max(1, int(round(pixels_at_32 * size / 32.0)))


# Trigger builders and generator architectures defined in other modules, in the order they
# register (the pattern triggers first, as when they lived in this module). They are imported on
# the first registry look-up (:func:`_load_builtins`), not with this module: most need torch,
# and inserting a pattern trigger into images (a poisoned test set, a figure) does not.
BUILTIN_MODULES = ("patterns", "gan", "trojannn", "invisible", "smooth", "naive_smooth")
_BUILTINS_LOADED = False


def _load_builtins() -> None:
    """Import :data:`BUILTIN_MODULES` once, which registers their builders and generators."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True  # first: the modules import this one and register into it
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")
