"""Meta Neural Analysis: the jumbo sampler, the meta-classifier with query tuning, the AUC summary."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from torch import nn

from freqbackdoor.data.datasets import prepare
from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.metrics import compare
from freqbackdoor.mna.evaluation import auc, auc_summary, mean_interval, mna_rows, paper_mna
from freqbackdoor.mna.meta import (
    MetaClassifier,
    MetaSettings,
    best_epoch,
    check_mna_config,
    meta_scores,
    train_meta_classifier,
)
from freqbackdoor.mna.mntd import (
    MNTDTraining,
    append_poisoned_copies,
    channel_stats,
    target_epochs,
)
from freqbackdoor.mna.shadow_models import (
    draw_jumbo_trigger,
    draw_lowpass_trigger,
    model_seed,
    split_rows,
    uses_algorithm1,
)
from freqbackdoor.models.classifier import build_model, count_parameters
from freqbackdoor.models.groups import train_model_group
from freqbackdoor.models.poisoning import poison_training_set
from freqbackdoor.models.prediction import group_logits
from freqbackdoor.triggers.registry import Trigger
from freqbackdoor.triggers.smooth import SmoothSettings


def _draws(seed: int, n: int = 400, size: int = 32, classes: int = 10):
    rng = np.random.default_rng(seed)
    return [draw_jumbo_trigger(size, size, classes, rng) for _ in range(n)]


def test_the_jumbo_sampler_covers_mntds_ranges():
    draws = _draws(0)
    records = [r for _, r in draws]
    families = pd.Series([r["family"] for r in records]).value_counts(normalize=True)
    assert 0.12 < families["blend"] < 0.28  # one side in five is the full image
    patches = [(t, r) for t, r in draws if r["family"] == "patch"]
    assert {r["side"] for _, r in patches} == {2, 3, 4, 5}
    for trigger, r in patches:
        assert r["alpha"] == 1.0 or 0.2 <= r["alpha"] <= 0.5
        assert 0 <= r["top"] <= 32 - r["side"] and 0 <= r["left"] <= 32 - r["side"]
        region = trigger.mask[r["top"] : r["top"] + r["side"], r["left"] : r["left"] + r["side"]]
        assert np.all(region == np.float32(r["alpha"]))
        assert trigger.mask.sum() == pytest.approx(3 * r["side"] ** 2 * r["alpha"], rel=1e-5)
    assert any(r["alpha"] == 1.0 for _, r in patches) and any(r["alpha"] < 1 for _, r in patches)
    for trigger, r in draws:
        assert 0.0 <= trigger.pattern.min() and trigger.pattern.max() <= 1.0
        assert 0.0 <= r["pattern_margin"] <= 1.0
        assert 0.05 <= r["share"] <= 0.5
        if r["family"] == "blend":
            assert 0.05 <= r["alpha"] <= 0.2 and np.all(trigger.mask == np.float32(r["alpha"]))
    assert {r["target_label"] for r in records} == set(range(10))
    shares = np.array([r["share"] for r in records])
    assert shares.min() < 0.1 and shares.max() > 0.45


def test_the_jumbo_sampler_is_reproducible_and_seed_dependent():
    first, again, other = _draws(7, 20), _draws(7, 20), _draws(8, 20)
    for (a, ra), (b, rb) in zip(first, again, strict=True):
        assert ra == rb
        np.testing.assert_array_equal(a.pattern, b.pattern)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert [r for _, r in first] != [r for _, r in other]


def test_a_jumbo_trigger_is_inserted_as_alpha_pattern_plus_one_minus_alpha_x():
    trigger, record = next(
        (t, r) for t, r in _draws(3, 50) if r["family"] == "patch" and r["alpha"] < 1
    )
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    out = trigger.apply_float(x / 255.0)
    top, left, side, alpha = record["top"], record["left"], record["side"], record["alpha"]
    window = (slice(None), slice(top, top + side), slice(left, left + side))
    expected = alpha * trigger.pattern[window[1:]] + (1 - alpha) * x[window] / 255.0
    np.testing.assert_allclose(out[window], expected, atol=1e-6)
    outside = np.ones((32, 32), bool)
    outside[window[1:]] = False
    np.testing.assert_allclose(out[:, outside], x[:, outside] / 255.0, atol=1e-6)


def test_a_lowpass_shadow_trigger_is_smooth_and_in_range():
    settings = SmoothSettings(filter_size=9, filter_sigma=2.0, max_value=0.2)
    trigger, record = draw_lowpass_trigger(32, 32, 5, np.random.default_rng(0), settings)
    assert trigger.mode == "normalise" and 0 <= record["target_label"] < 5
    assert trigger.pattern.min() == pytest.approx(0.0) and trigger.pattern.max() == pytest.approx(
        0.2
    )
    step = np.abs(np.diff(trigger.pattern, axis=0)).mean()
    noise = np.abs(np.diff(np.random.default_rng(0).random((32, 32, 3)) * 0.2, axis=0)).mean()
    assert step < noise / 5


def test_split_rows_are_disjoint_seeded_and_sized():
    split = split_rows(1000, 0.02, 0.5, seed=3)
    assert split["shadow"].size == 20 and split["target"].size == 500
    assert not np.intersect1d(split["shadow"], split["target"]).size
    np.testing.assert_array_equal(split["shadow"], split_rows(1000, 0.02, 0.5, seed=3)["shadow"])
    with pytest.raises(ConfigError, match="shadow_share"):
        split_rows(100, 0.0, 0.5, 0)
    with pytest.raises(ConfigError, match="at most 1"):
        split_rows(100, 0.6, 0.5, 0)
    with pytest.raises(DataError, match="shadow"):
        split_rows(10, 0.01, 0.5, 0)


def test_model_seeds_are_distinct_and_stable():
    seeds = {
        model_seed(0, role, kind, i)
        for role in ("shadow", "target")
        for kind in ("a", "b")
        for i in range(50)
    }
    assert len(seeds) == 200
    assert model_seed(0, "shadow", "jumbo", 3) == model_seed(0, "shadow", "jumbo", 3)
    assert model_seed(1, "shadow", "jumbo", 3) != model_seed(0, "shadow", "jumbo", 3)


def test_algorithm1_share_spreads_evenly():
    assert [uses_algorithm1(i, 0.5) for i in range(6)] == [False, True] * 3
    assert sum(uses_algorithm1(i, 0.25) for i in range(8)) == 2
    assert not any(uses_algorithm1(i, 0.0) for i in range(5))
    assert all(uses_algorithm1(i, 1.0) for i in range(5))
    with pytest.raises(ConfigError, match="algorithm1_share"):
        uses_algorithm1(0, 1.5)


# --------------------------------------------------------------------------- meta-classifier


class _Tiny(nn.Module):
    """A random linear classifier on 8x8 images; a trojan adds a large target logit whenever
    the top-left 2x2 corner is bright, the shape of a BadNets backdoor."""

    def __init__(self, seed: int, trojaned: bool) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(3, 3 * 8 * 8, generator=generator) * 0.05)
        self.trojaned = trojaned

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x.flatten(1) @ self.weight.T
        if self.trojaned:
            corner = x[:, :, :2, :2].mean(dim=(1, 2, 3))
            logits = logits + torch.stack([20 * corner, 0 * corner, 0 * corner], dim=1)
        return logits


def _zoo(n: int, offset: int) -> tuple[list[nn.Module], np.ndarray]:
    models = [_Tiny(offset + i, trojaned=i % 2 == 1) for i in range(n)]
    return models, np.array([i % 2 for i in range(n)])


def test_the_meta_classifier_tells_obviously_trojaned_models_from_clean_ones():
    shadow, labels = _zoo(40, 0)
    targets, truth = _zoo(20, 1000)
    settings = MetaSettings(queries=4, hidden=16, epochs=15, lr=1e-2, query_init=0.01)
    meta, history = train_meta_classifier(shadow, labels, (3, 8, 8), 3, settings, seed=0)
    scores = meta_scores(meta, targets)
    assert auc(scores[truth == 0], scores[truth == 1]) > 0.9
    assert history["train_acc"][-1] > 0.8 and len(history["loss"]) == 15


def test_query_tuning_changes_the_queries_and_can_be_switched_off():
    shadow, labels = _zoo(8, 0)
    for tuning in (True, False):
        settings = MetaSettings(queries=2, hidden=4, epochs=2, query_init=1e-3, query_tuning=tuning)
        before = MetaClassifier((3, 8, 8), 3, settings, seed=5).queries.detach().clone()
        meta, _ = train_meta_classifier(shadow, labels, (3, 8, 8), 3, settings, seed=5)
        changed = not torch.equal(meta.queries.detach(), before)
        assert changed is tuning
    assert all(not p.requires_grad for m in shadow for p in m.parameters())  # models stay frozen


def test_meta_training_is_deterministic_for_a_seed():
    shadow, labels = _zoo(8, 0)
    settings = MetaSettings(queries=2, hidden=4, epochs=3, query_init=1e-3)
    a = meta_scores(
        train_meta_classifier(shadow, labels, (3, 8, 8), 3, settings, seed=1)[0], shadow
    )
    b = meta_scores(
        train_meta_classifier(shadow, labels, (3, 8, 8), 3, settings, seed=1)[0], shadow
    )
    np.testing.assert_array_equal(a, b)


def test_meta_training_needs_both_kinds_and_matching_labels():
    shadow, _ = _zoo(4, 0)
    settings = MetaSettings(queries=2, hidden=4, epochs=1, query_init=1e-3)
    with pytest.raises(DataError, match="both"):
        train_meta_classifier(shadow, [0, 0, 0, 0], (3, 8, 8), 3, settings)
    with pytest.raises(ValueError, match="labels"):
        train_meta_classifier(shadow, [0, 1], (3, 8, 8), 3, settings)
    with pytest.raises(DataError, match="logits of shape"):
        train_meta_classifier(shadow, [0, 1, 0, 1], (3, 8, 8), 5, settings)


def test_best_epoch_is_the_first_highest_validation_auc():
    assert best_epoch([0.5, 0.8, 0.8, 0.7]) == 2  # a tie keeps the earlier epoch (MNTD: ">")
    assert best_epoch([0.9, 0.6, 0.7]) == 1
    assert best_epoch([0.1, 0.2, 0.3]) == 3
    assert best_epoch([float("nan"), 0.4, 0.3]) == 2
    assert best_epoch([float("nan")] * 3) == 3  # nothing to choose by: the last epoch


def test_the_meta_classifier_keeps_its_best_validation_epoch(monkeypatch):
    """Hand-made: the validation AUCs of the four epochs are scripted as 0.6, 0.9, 0.7, 0.9;
    the kept weights must be exactly those after epoch 2 (a later tie does not replace it)."""
    shadow, labels = _zoo(12, 0)
    validation, truth = _zoo(4, 500)
    settings = MetaSettings(queries=2, hidden=4, epochs=4, lr=1e-2, query_init=0.01)
    scripted = iter([0.6, 0.9, 0.7, 0.9])
    monkeypatch.setattr("freqbackdoor.mna.meta.roc_auc_score", lambda *_: next(scripted))
    meta, history = train_meta_classifier(
        shadow, labels, (3, 8, 8), 3, settings, seed=0, val_models=validation, val_labels=truth
    )
    assert history["val_auc"] == [0.6, 0.9, 0.7, 0.9] and history["best_epoch"] == 2
    two_epochs = MetaSettings(queries=2, hidden=4, epochs=2, lr=1e-2, query_init=0.01)
    reference, plain = train_meta_classifier(shadow, labels, (3, 8, 8), 3, two_epochs, seed=0)
    assert plain["best_epoch"] == 2 and plain["val_auc"] == [None, None]  # no validation: last
    assert plain["loss"] == history["loss"][:2]  # the same run up to epoch 2
    for key, value in reference.state_dict().items():
        assert torch.equal(meta.state_dict()[key], value), key
    with pytest.raises(DataError, match="validation"):
        train_meta_classifier(
            shadow, labels, (3, 8, 8), 3, settings, val_models=validation[:2], val_labels=[0, 0]
        )


def test_queries_start_at_the_datas_channel_statistics():
    rng = np.random.default_rng(0)
    images = np.stack(
        [rng.normal(loc, scale, (40, 8, 8)) for loc, scale in ((50, 10), (128, 40), (200, 20))],
        axis=-1,
    )
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    mean, std = channel_stats(images)
    values = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, values.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, values.std(0), rtol=1e-5)
    settings = MetaSettings(queries=300)
    queries = MetaClassifier((3, 8, 8), 3, settings, seed=1, query_stats=(mean, std)).queries
    per_channel = queries.detach().permute(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(per_channel.mean(1).numpy(), mean, atol=0.01)
    np.testing.assert_allclose(per_channel.std(1).numpy(), std, rtol=0.03)
    old = MetaClassifier((3, 8, 8), 3, MetaSettings(queries=300, query_init=1e-3), seed=1)
    assert float(old.queries.detach().mean().abs()) < 1e-4
    assert float(old.queries.detach().std()) == pytest.approx(1e-3, rel=0.03)
    with pytest.raises(ConfigError, match="query_init: data"):
        MetaClassifier((3, 8, 8), 3, settings)
    with pytest.raises(DataError, match="uint8"):
        channel_stats(images[:0])


def test_meta_settings_name_bad_keys_and_values():
    with pytest.raises(ConfigError, match="mna.meta: unknown key.*querys"):
        MetaSettings.from_config({"querys": 3})
    with pytest.raises(ConfigError, match="mna.meta.epochs"):
        MetaSettings.from_config({"epochs": 0})
    with pytest.raises(ConfigError, match="threshold"):
        MetaSettings(threshold=1.0)
    with pytest.raises(ConfigError, match="query_init"):
        MetaSettings(query_init="zeros")
    assert MetaSettings().query_init == "data"  # MNTD's run_meta.py for CIFAR-10


# --------------------------------------------------------------------------- evaluation


def test_auc_on_known_cases():
    assert auc([0.1, 0.2], [0.8, 0.9]) == 1.0
    assert auc([0.8, 0.9], [0.1, 0.2]) == 0.0
    assert auc([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert auc([0.1, 0.6], [0.5, 0.9]) == 0.75
    with pytest.raises(DataError, match="both kinds"):
        auc([], [0.3])


def test_mean_interval_is_the_t_interval():
    values = [0.6, 0.7, 0.8, 0.75, 0.65]
    mean, low, high = mean_interval(values)
    expected = scipy.stats.t.interval(0.95, 4, loc=np.mean(values), scale=scipy.stats.sem(values))
    assert mean == pytest.approx(0.7)
    assert (low, high) == pytest.approx(expected)
    one = mean_interval([0.4])
    assert one[0] == 0.4 and np.isnan(one[1]) and np.isnan(one[2])


def _scores_frame() -> pd.DataFrame:
    rows = []
    for seed, (clean, smooth) in enumerate([([0.1, 0.2], [0.3, 0.9]), ([0.1, 0.6], [0.7, 0.8])]):
        for i, s in enumerate(clean):
            rows.append(
                {
                    "stage": "before",
                    "seed": seed,
                    "kind": "clean",
                    "index": i,
                    "trojaned": 0,
                    "score": s,
                }
            )
        for i, s in enumerate(smooth):
            rows.append(
                {
                    "stage": "before",
                    "seed": seed,
                    "kind": "smooth",
                    "index": i,
                    "trojaned": 1,
                    "score": s,
                }
            )
    return pd.DataFrame(rows)


def test_auc_summary_on_a_hand_made_case():
    summary = auc_summary(_scores_frame(), threshold=0.5)
    row = summary.iloc[0]
    assert (row.stage, row.kind, row.seeds) == ("before", "smooth", 2)
    assert row.auc == pytest.approx(1.0)  # both seeds separate perfectly
    assert row.detection_rate == pytest.approx(75.0)  # 1 of 2, then 2 of 2
    assert row.accuracy == pytest.approx((75.0 + 75.0) / 2)
    assert row.clean_models == 2 and row.trojaned_models == 2


def test_paper_comparison_uses_fraction_tolerance_for_aucs():
    summary = auc_summary(_scores_frame(), threshold=0.5).assign(stage="after")
    ours = pd.DataFrame(mna_rows("photos32", summary))
    paper = paper_mna(
        {"auc_after_upgrade": 0.97, "detection_accuracy_after_upgrade": 60.0}, "cifar10"
    )
    side = compare(ours, paper, {"photos32": "cifar10"}, tolerance=5.0)
    by_column = side.set_index("column")
    assert bool(by_column.loc["auc_after", "within_tolerance"]) is True  # |1 - 0.97| <= 0.05
    assert bool(by_column.loc["detection_rate_after", "within_tolerance"]) is False  # 75 vs 60
    with pytest.raises(ConfigError, match="unknown mna key"):
        paper_mna({"auc_sideways": 0.5}, "cifar10")


def test_check_mna_config_names_the_key():
    mna = {"datasets": ["photos32"], "classic": ["badnets"], "target_models": {"classic": 1}}
    attacks = {"photos32": ["badnets"], "digits32": ["blend"]}
    check_mna_config(mna, ["photos32"], attacks)
    with pytest.raises(ConfigError, match="smooth.datasets"):
        check_mna_config(mna, [], attacks)
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'"):
        check_mna_config({**mna, "datasets": ["cifar"]}, ["cifar"], attacks)
    with pytest.raises(ConfigError, match="mna.classic: blend"):
        check_mna_config({**mna, "classic": ["blend"]}, ["photos32"], attacks)


# --------------------------------------------------------------------------- MNTD's recipe


def test_mntds_network_has_its_parameter_count():
    conv = [(3, 32), (32, 32), (32, 64), (64, 64)]
    by_hand = sum(9 * c_in * c_out + c_out for c_in, c_out in conv)
    by_hand += 64 * 8 * 8 * 256 + 256  # 2x2 pooling twice: 32 -> 8
    by_hand += 256 * 256 + 256
    by_hand += 256 * 10 + 10
    model = build_model("mntd_cifar10", 10, 32)
    assert count_parameters(model) == by_hand == 1_182_762
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10) and model.features(x).shape == (2, 256)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5]
    small = build_model("mntd_cifar10", 7, 16)  # only the first dense layer depends on size
    assert count_parameters(small) == by_hand - 64 * 48 * 256 - 3 * 257
    assert count_parameters(build_model("mntd_cifar10", 10, 224, downsample=7)) == by_hand
    with pytest.raises(ConfigError, match="multiple of 4"):
        build_model("mntd_cifar10", 10, 30)


def _trigger(size: int = 8, target: int = 2) -> Trigger:
    pattern = np.zeros((size, size, 3), np.float32)
    mask = np.zeros_like(pattern)
    pattern[:2, :2], mask[:2, :2] = 1.0, 1.0
    return Trigger(name="corner", pattern=pattern, mask=mask, mode="replace", target_label=target)


def test_appended_poisoning_adds_int_p_n_copies_after_the_untouched_clean_rows():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (37, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 4, 37)
    x_before, y_before = x.copy(), y.copy()
    trigger = _trigger()
    x_out, y_out, rows = append_poisoned_copies(x, y, trigger, 0.29, seed=5)
    assert len(rows) == int(0.29 * 37) == 10  # MNTD truncates: round() would give 11
    assert x_out.shape == (47, 8, 8, 3) and y_out.shape == (47,) and y_out.dtype == np.int64
    np.testing.assert_array_equal(x_out[:37], x_before)  # clean rows untouched, in order
    np.testing.assert_array_equal(y_out[:37], y_before)
    np.testing.assert_array_equal(x, x_before)  # the input is not modified
    np.testing.assert_array_equal(x_out[37:], trigger.apply(x_before[rows]))
    assert np.all(y_out[37:] == 2) and np.all(x_out[37:, :2, :2] == 255)
    assert np.unique(rows).size == rows.size and np.all(np.diff(rows) > 0)
    again = append_poisoned_copies(x, y, trigger, 0.29, seed=5)[2]
    np.testing.assert_array_equal(rows, again)
    with pytest.raises(ConfigError, match="no image"):
        append_poisoned_copies(x, y, trigger, 0.02, seed=5)
    # Section 5's poisoned models still replace rows: same size, round(p * N) rows changed.
    x_rep, _, replaced = poison_training_set(x, y, trigger, 0.29, seed=5)
    assert x_rep.shape == x.shape and replaced.size == round(0.29 * 37)


def test_target_epochs_give_targets_the_shadow_models_steps():
    assert target_epochs(100, 0.02, 0.5) == 4  # MNTD: int(100 * 0.02 / 0.5)
    assert target_epochs(6, 0.3, 0.5) == 3  # the demo: int(3.6)
    assert target_epochs(10, 0.6, 0.2) == 30  # 29.999999999999996 without the nudge
    assert target_epochs(1, 0.02, 0.5) == 1  # never 0
    recipe = MNTDTraining.from_config({"shadow_epochs": 100})
    assert [recipe.epochs(r, 0.02, 0.5) for r in ("shadow", "validation", "target")] == [
        100,
        100,
        4,
    ]
    settings = recipe.train_settings("target", 0.02, 0.5, seed=3)
    assert (settings.epochs, settings.batch_size, settings.lr, settings.optimizer) == (
        4,
        100,
        1e-3,
        "adam",
    )
    assert settings.val_fraction == 0 and not settings.augment and settings.seed == 3
    assert MNTDTraining().as_dict() == {
        "architecture": "mntd_cifar10",
        "optimizer": "adam",
        "lr": 0.001,
        "batch_size": 100,
        "shadow_epochs": 100,
        "downsample": 1,
    }
    with pytest.raises(ConfigError, match="mna.training: unknown key.*epochs"):
        MNTDTraining.from_config({"epochs": 4})
    with pytest.raises(ConfigError, match="architecture"):
        MNTDTraining(architecture="resnet")
    with pytest.raises(ConfigError, match="role"):
        recipe.epochs("meta", 0.02, 0.5)


def test_mntds_recipe_learns_embedded_photos(tmp_path):
    """MNTD's network, Adam 1e-3, batches of 100: 180 steps on 210 embedded photo crops of
    16 px (7 classes, chance 14%) reach far above chance on held-out crops."""
    spec = {"source": "embedded_photos", "size": 16, "train_per_class": 30, "test_per_class": 20}
    prepare("photos", spec, tmp_path / "raw", tmp_path / "photos", seed=0)
    x, y, x_test, y_test = (
        np.load(tmp_path / "photos" / f"{name}.npy")
        for name in ("x_train", "y_train", "x_test", "y_test")
    )
    settings = MNTDTraining(shadow_epochs=60).train_settings("shadow", 0.3, 0.5)
    model = build_model("mntd_cifar10", 7, 16, seed=0)
    history = train_model_group([model], [x], [y], settings, [0], "cpu", stacked=False)
    accuracy = (group_logits([model], x_test).argmax(2)[0] == y_test).mean()
    assert accuracy > 0.45, accuracy
    assert history["train_loss"][0][-1] < 0.5 * history["train_loss"][0][0]


def test_check_mna_config_needs_both_validation_kinds():
    mna = {"datasets": [], "training": {"shadow_epochs": 2}}
    check_mna_config({**mna, "validation_models": {"benign": 0, "jumbo": 0, "smooth": 0}}, [], {})
    check_mna_config({**mna, "validation_models": {"benign": 1, "jumbo": 2, "smooth": 1}}, [], {})
    with pytest.raises(ConfigError, match="benign and jumbo"):
        check_mna_config({**mna, "validation_models": {"benign": 2, "jumbo": 0}}, [], {})
    with pytest.raises(ConfigError, match="mna.training"):
        check_mna_config({**mna, "training": {"optimizer": "lbfgs"}}, [], {})
