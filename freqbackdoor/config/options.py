"""One way to build a settings dataclass from a config mapping: :class:`ConfigSettings`.

The library's settings objects (a classifier's training, the detector's, a fine-tuning's, the
manipulations', MNA's) are frozen dataclasses built from a mapping that
:mod:`freqbackdoor.config.settings` resolved. They share one ``from_config``: an unknown key is
an error that names it (a typo would otherwise fall back to a default silently), a required
key that is missing is named too, and everything else is the dataclass's own defaults and
its ``__post_init__`` checks, which also guard callers that do not come through the schema
(the recipe proofs, screening, tests).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import ConfigError


def settings_from_config(
    cls: type, mapping: Mapping[str, Any] | None, where: str, required: tuple[str, ...] = ()
) -> Any:
    """``cls(**mapping)``; ``ConfigError`` naming ``where`` and the key for an unknown key or
    a missing required one."""
    mapping = dict(mapping or {})
    known = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    missing = [key for key in required if key not in mapping]
    if missing:
        raise ConfigError(f"{where}: {', '.join(missing)} required")
    return cls(**mapping)


class ConfigSettings:
    """Mixin of a settings dataclass: :meth:`from_config` and :meth:`as_dict`.

    A subclass names its config block in ``CONFIG_NAME`` (for error messages) and lists its
    keys without a default in ``REQUIRED``.
    """

    CONFIG_NAME: ClassVar[str] = "settings"
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any] | None) -> Any:
        """Settings from a resolved config mapping (see :func:`settings_from_config`)."""
        return settings_from_config(cls, mapping, cls.CONFIG_NAME, cls.REQUIRED)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain mapping (checkpoint sidecars record it)."""
        return dataclasses.asdict(self)
