"""Every stage's settings resolved from the config, layer by layer (freqbackdoor.config.settings).

The rules pass these dicts to their jobs and the recipe proofs build from them, so each test
here pins one layer: the global block, the dataset's overrides, the stage's override, the seed.
"""

import copy
from pathlib import Path

import pytest
import yaml

from freqbackdoor.config import settings as resolve
from freqbackdoor.detection.detector import DetectorSettings
from freqbackdoor.detection.transfer import FineTuneSettings
from freqbackdoor.errors import ConfigError
from freqbackdoor.mna.mntd import MNTDTraining
from freqbackdoor.models.training import TrainSettings
from freqbackdoor.triggers.smooth import SmoothSettings

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    return yaml.safe_load((ROOT / "config" / name).read_text())


@pytest.fixture
def config():
    """A small config with one override at every layer."""
    return {
        "seed": 7,
        "datasets": {
            "a": {
                "source": "embedded_photos",
                "size": 32,
                "attacks": ["badnets"],
                "paper_name": "cifar10",
                "reference_classifier": {"lr": 0.5, "downsample": 2},
                "detector": {"epochs": 9},
                "smooth": {"poisoned_model": {"epochs": 3}, "fine_tune": {"lr": 0.2}},
            },
            "b": {"source": "embedded_digits", "size": 32, "attacks": ["blend"]},
            "t": {"source": "embedded_digits", "size": 32, "reference_model": "b"},
        },
        "reference_classifier": {"epochs": 5, "lr": 0.05, "batch_size": 32},
        "detector": {"architecture": "cnn6_kmax128", "epochs": 4, "batch_size": 64},
        "table5": {"epochs": 2},
        "transfer": {"fine_tune": {"epochs": 1, "lr": 0.001}, "combined_detector": {"epochs": 6}},
        "smooth": {
            "datasets": ["a"],
            "poisoned_model": {"epochs": 8},
            "fine_tune": {"epochs": 1, "lr": 0.05},
            "poison_share": 0.1,
        },
        "triggers": {
            "smooth": {"filter_size": 5, "filter_sigma": 1.5, "max_value": 0.1, "passes": 3},
            "lowpass_noise1": {"max_value": 0.2},
        },
        "mna": {
            "datasets": ["a"],
            "training": {"architecture": "mntd_cnn", "shadow_epochs": 2},
            "smooth_shadow": {"search": {"passes": 1}},
        },
    }


def test_reference_classifier_layers_global_then_dataset_then_seed(config):
    a = resolve.reference_classifier(config, "a")
    assert a["training"] == {"epochs": 5, "lr": 0.5, "batch_size": 32, "seed": 7}
    assert a["model"] == {"downsample": 2}
    b = resolve.reference_classifier(config, "b")
    assert b["training"]["lr"] == 0.05 and b["model"] == {"downsample": 1}


def test_seed_is_the_configs_and_is_set_last(config):
    config["reference_classifier"]["seed"] = 99  # not a schema key; even so the config's wins
    assert resolve.reference_classifier(config, "b")["training"]["seed"] == 7
    assert resolve.detector(config, "b")["seed"] == 7
    assert resolve.smooth_upgrade(config, "a")["seed"] == 7


def test_poisoned_model_is_the_classifier_recipe_then_smooth_overrides(config):
    a = resolve.poisoned_model(config, "a")  # the dataset's smooth block replaces the global one
    assert a["training"] == {"epochs": 3, "lr": 0.5, "batch_size": 32, "seed": 7}
    assert a["model"] == {"downsample": 2}
    assert resolve.poisoned_model(config, "b")["training"]["epochs"] == 8
    assert resolve.smooth_key(config, "a", "poisoned_model") == "datasets.a.smooth.poisoned_model"
    assert resolve.smooth_key(config, "b", "poisoned_model") == "smooth.poisoned_model"


def test_detector_layers_and_table5_ablation_epochs(config):
    assert resolve.detector(config, "a")["epochs"] == 9
    assert resolve.detector(config, "b")["epochs"] == 4
    ablation = resolve.detector(config, "a", "linear")
    assert ablation["architecture"] == "linear" and ablation["epochs"] == 2
    same = resolve.detector(config, "a", "cnn6_kmax128")  # the configured one: no override
    assert same["epochs"] == 9
    _, source = resolve.detector_layers(config, "a", "linear")
    assert source == "detector + datasets.a.detector + table5"
    assert resolve.default_architecture(config, "a") == "cnn6_kmax128"


def test_transfer_detector_of_one_dataset_or_several(config):
    assert resolve.transfer_detector(config, "a") == resolve.detector(config, "a")
    combined = resolve.transfer_detector(config, "a+b")
    assert combined == {"architecture": "cnn6_kmax128", "epochs": 6, "batch_size": 64, "seed": 7}


def test_transfer_fine_tune_seed_takes_the_repeat(config):
    assert resolve.transfer_fine_tune(config)["seed"] == 7
    assert resolve.transfer_fine_tune(config, repeat=3) == {"epochs": 1, "lr": 0.001, "seed": 10}


def test_smooth_upgrade_takes_the_datasets_fine_tune(config):
    assert resolve.smooth_upgrade(config, "a") == {"lr": 0.2, "seed": 7}
    assert resolve.smooth_upgrade(config, "b") == {"epochs": 1, "lr": 0.05, "seed": 7}


def test_lowpass_trigger_inherits_the_smooth_filter_and_overrides_it(config):
    options = resolve.trigger_options(config, "lowpass_noise1")
    assert options == {"filter_size": 5, "filter_sigma": 1.5, "max_value": 0.2}
    assert resolve.trigger_options(config, "badnets") == {}


def test_mna_settings(config):
    assert resolve.mna_training(config) == {"architecture": "mntd_cnn", "shadow_epochs": 2}
    search = resolve.mna_search(config)
    assert search["passes"] == 1 and search["filter_size"] == 5
    assert "datasets" not in resolve.mna_spec(config)


def test_dataset_spec_leaves_the_rules_keys_out(config):
    spec = resolve.dataset_spec(config, "a")
    assert spec == {"source": "embedded_photos", "size": 32}
    assert resolve.reference_dataset(config, "t") == "b"
    assert resolve.reference_dataset(config, "a") == "a"


def test_an_unknown_dataset_is_named(config):
    with pytest.raises(ConfigError, match="detector: 'cifar' is not a configured dataset"):
        resolve.detector(config, "cifar")
    with pytest.raises(ConfigError, match="reference_classifier: 'x'"):
        resolve.reference_classifier(config, "x")


def test_a_block_that_is_not_a_mapping_is_named(config):
    config["datasets"]["a"]["detector"] = 3
    with pytest.raises(ConfigError, match="datasets.a.detector: expected a mapping"):
        resolve.detector(config, "a")


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_every_resolved_setting_of_the_shipped_configs_builds_its_library_object(name):
    """What the rules pass is what the library accepts, for every dataset of both configs."""
    config = load(name)
    for dataset in config["datasets"]:
        TrainSettings.from_config(resolve.reference_classifier(config, dataset)["training"])
        DetectorSettings.from_config(resolve.detector(config, dataset))
    for dataset in config["smooth"]["datasets"]:
        TrainSettings.from_config(resolve.poisoned_model(config, dataset)["training"])
        FineTuneSettings.from_config(resolve.smooth_upgrade(config, dataset))
    for architecture in config["table5"]["architectures"]:
        dataset = config["table5"]["dataset"]
        DetectorSettings.from_config(resolve.detector(config, dataset, architecture))
    FineTuneSettings.from_config(resolve.transfer_fine_tune(config, repeat=1))
    MNTDTraining.from_config(resolve.mna_training(config))
    SmoothSettings.from_config(resolve.mna_search(config))


def test_resolution_does_not_change_the_config(config):
    before = copy.deepcopy(config)
    resolve.reference_classifier(config, "a")
    resolve.poisoned_model(config, "a")
    resolve.detector(config, "a", "linear")
    resolve.transfer_detector(config, "a+b")
    resolve.smooth_spec(config, "a")
    resolve.mna_search(config)
    assert config == before
