"""Every training recipe of a config, as the workflow resolves it, and small runs that prove it trains.

The workflow trains eight kinds of model, each by a recipe (architecture, optimiser, learning
rate, batch size, regularisation) that the config spreads over global blocks and per-dataset
overrides, resolved by :mod:`freqbackdoor.config.settings`:

=====================  ==============================================================  =============================
recipe                 config keys (later ones override earlier ones)                  library settings
=====================  ==============================================================  =============================
reference_classifier   ``reference_classifier``, ``datasets.<d>.reference_classifier``  :class:`~freqbackdoor.models.training.TrainSettings`
detector               ``detector``, ``datasets.<d>.detector``                          :class:`~freqbackdoor.detection.detector.DetectorSettings`
poisoned_model         the reference classifier's, ``smooth.poisoned_model``,           :class:`~freqbackdoor.models.training.TrainSettings`
                       ``datasets.<d>.smooth.poisoned_model``
transfer_fine_tune     ``transfer.fine_tune``                                           :class:`~freqbackdoor.detection.transfer.FineTuneSettings`
smooth_upgrade         ``smooth.fine_tune``, ``datasets.<d>.smooth.fine_tune``          :class:`~freqbackdoor.detection.transfer.FineTuneSettings`
mna_shadow_model       ``mna.training`` (shadow epochs)                                 :class:`~freqbackdoor.mna.mntd.MNTDTraining`
mna_target_model       ``mna.training`` (target epochs), ``smooth.poison_share``        :class:`~freqbackdoor.mna.mntd.MNTDTraining`
meta_classifier        ``mna.meta``                                                     :class:`~freqbackdoor.mna.meta.MetaSettings`
=====================  ==============================================================  =============================

:func:`resolve_recipe` takes each recipe's settings from :mod:`freqbackdoor.config.settings`,
the functions the rules call for their jobs' ``params.settings``, and builds the library's
settings object with its ``from_config``, so a config error surfaces with the key that holds
it. Only the step budget (``epochs``) may be replaced, since a proof that a recipe learns
cannot run the paper's 150 epochs; the runners train on whatever data they are handed
(sizes, MNA shares and the upgrade's sample count are scale, capped by that data), and the
meta-classifier's shadow models are small ones (:func:`small_model_set`).

Why this exists: a recipe that does not learn (a learning rate too high for the network, a
BatchNorm statistic that does not fit the weights, an optimiser keyword lost on the way) shows
up only at the end of a long run as a table of chance-level numbers. Each ``run_*`` function
below trains one recipe on small data (the demo's embedded datasets) for a few dozen to a few
hundred steps and returns a :class:`RecipeRecord`: what was trained, by which config keys, how
fast, and its metric next to chance, so ``tests/test_recipes.py`` can assert that each recipe
learns and ``benchmarks/recipes.py`` can print how fast and how far on CPU and CUDA.
"""

from .records import (
    RecipeRecord,
    Split,
    epochs_for_steps,
    majority_share,
    pair_accuracy,
    prepare_splits,
    recipe_trigger,
)
from .resolution import (
    PATCH_TRIGGER,
    RECIPES,
    Recipe,
    default_dataset,
    resolve_recipe,
    resolve_recipes,
    transfer_source,
)
from .runs import (
    run_all,
    run_detector,
    run_meta_classifier,
    run_mna_model,
    run_poisoned_model,
    run_reference_classifier,
    run_smooth_upgrade,
    run_transfer_fine_tune,
    small_model_set,
)

__all__ = [
    "PATCH_TRIGGER",
    "RECIPES",
    "Recipe",
    "RecipeRecord",
    "Split",
    "default_dataset",
    "epochs_for_steps",
    "majority_share",
    "pair_accuracy",
    "prepare_splits",
    "recipe_trigger",
    "resolve_recipe",
    "resolve_recipes",
    "run_all",
    "run_detector",
    "run_meta_classifier",
    "run_mna_model",
    "run_poisoned_model",
    "run_reference_classifier",
    "run_smooth_upgrade",
    "run_transfer_fine_tune",
    "small_model_set",
    "transfer_source",
]
