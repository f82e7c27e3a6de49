"""Meta Neural Analysis: the jumbo sampler, the meta-classifier with query tuning, the AUC summary."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from torch import nn

from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.metrics import compare
from freqbackdoor.mna import (
    MetaClassifier,
    MetaSettings,
    auc,
    auc_summary,
    check_mna_config,
    draw_jumbo_trigger,
    draw_lowpass_trigger,
    mean_interval,
    meta_scores,
    mna_rows,
    model_seed,
    paper_mna,
    split_rows,
    train_meta_classifier,
    uses_algorithm1,
)
from freqbackdoor.smooth import SmoothSettings


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
        settings = MetaSettings(queries=2, hidden=4, epochs=2, query_tuning=tuning)
        before = MetaClassifier((3, 8, 8), 3, settings, seed=5).queries.detach().clone()
        meta, _ = train_meta_classifier(shadow, labels, (3, 8, 8), 3, settings, seed=5)
        changed = not torch.equal(meta.queries.detach(), before)
        assert changed is tuning
    assert all(not p.requires_grad for m in shadow for p in m.parameters())  # models stay frozen


def test_meta_training_is_deterministic_for_a_seed():
    shadow, labels = _zoo(8, 0)
    settings = MetaSettings(queries=2, hidden=4, epochs=3)
    a = meta_scores(
        train_meta_classifier(shadow, labels, (3, 8, 8), 3, settings, seed=1)[0], shadow
    )
    b = meta_scores(
        train_meta_classifier(shadow, labels, (3, 8, 8), 3, settings, seed=1)[0], shadow
    )
    np.testing.assert_array_equal(a, b)


def test_meta_training_needs_both_kinds_and_matching_labels():
    shadow, _ = _zoo(4, 0)
    settings = MetaSettings(queries=2, hidden=4, epochs=1)
    with pytest.raises(DataError, match="both"):
        train_meta_classifier(shadow, [0, 0, 0, 0], (3, 8, 8), 3, settings)
    with pytest.raises(ValueError, match="labels"):
        train_meta_classifier(shadow, [0, 1], (3, 8, 8), 3, settings)
    with pytest.raises(DataError, match="logits of shape"):
        train_meta_classifier(shadow, [0, 1, 0, 1], (3, 8, 8), 5, settings)


def test_meta_settings_name_bad_keys_and_values():
    with pytest.raises(ConfigError, match="unknown mna.meta key.*querys"):
        MetaSettings.from_config({"querys": 3})
    with pytest.raises(ConfigError, match="mna.meta.epochs"):
        MetaSettings.from_config({"epochs": 0})
    with pytest.raises(ConfigError, match="threshold"):
        MetaSettings(threshold=1.0)


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
