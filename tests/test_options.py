"""The one from_config of the library's settings dataclasses (freqbackdoor.config.options)."""

import dataclasses

import pytest

from freqbackdoor.config.options import ConfigSettings, settings_from_config
from freqbackdoor.detection.detector import DetectorSettings
from freqbackdoor.detection.manipulations import ManipulationParams
from freqbackdoor.detection.transfer import FineTuneSettings
from freqbackdoor.errors import ConfigError
from freqbackdoor.mna.meta import MetaSettings
from freqbackdoor.mna.mntd import MNTDTraining
from freqbackdoor.models.training import TrainSettings


@dataclasses.dataclass(frozen=True)
class Example(ConfigSettings):
    CONFIG_NAME = "example"
    REQUIRED = ("epochs",)

    epochs: int
    lr: float = 0.1


def test_from_config_fills_defaults_and_round_trips():
    settings = Example.from_config({"epochs": 3})
    assert settings == Example(3, 0.1)
    assert Example.from_config(settings.as_dict()) == settings


def test_an_unknown_key_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"example: unknown key\(s\) lrr; known: epochs, lr"):
        Example.from_config({"epochs": 3, "lrr": 1})


def test_a_missing_required_key_is_named():
    with pytest.raises(ConfigError, match="example: epochs required"):
        Example.from_config({"lr": 1.0})
    with pytest.raises(ConfigError, match="block: epochs required"):
        settings_from_config(Example, None, "block", ("epochs",))


@pytest.mark.parametrize(
    "cls, mapping, where",
    [
        (TrainSettings, {"epochs": 1}, "training settings"),
        (DetectorSettings, {"architecture": "linear", "epochs": 1}, "detector"),
        (FineTuneSettings, {"epochs": 1}, "transfer.fine_tune"),
        (ManipulationParams, {}, "manipulations"),
        (MetaSettings, {}, "mna.meta"),
        (MNTDTraining, {}, "mna.training"),
    ],
)
def test_every_settings_class_shares_it(cls, mapping, where):
    """Each library settings class is a ConfigSettings and names its block in errors."""
    assert issubclass(cls, ConfigSettings)
    settings = cls.from_config(mapping)
    assert cls.from_config(settings.as_dict()) == settings
    with pytest.raises(ConfigError, match=f"{where}: unknown key.*typo"):
        cls.from_config({**mapping, "typo": 1})
