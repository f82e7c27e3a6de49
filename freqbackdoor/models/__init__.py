"""Image classifiers: the reference CNN of Table 8, its training, poisoned models and the
groups of small models that Meta Neural Analysis trains.

:func:`images_to_tensor` is named here because classifier sidecars cite it as
``freqbackdoor.models.images_to_tensor`` (the input convention of every classifier).
"""

from .classifier import images_to_tensor

__all__ = ["images_to_tensor"]
