"""Generator triggers: the file format of mode "generator" and the gan_tri builder."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.triggers.gan import ARCH, UpconvGenerator, psnr
from freqbackdoor.triggers.registry import (
    GeneratorWeights,
    Trigger,
    TriggerContext,
    build_trigger,
    trigger_needs,
)

FAST = {"steps": 40, "crop": 16, "width": 8, "batch_size": 8}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest (and steadiest on a shared CPU) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smooth_images():
    """40 smooth 32x32 images (bicubic upsampling of 4x4 noise): learnable by a tiny autoencoder."""
    rng = np.random.default_rng(7)
    low = rng.integers(0, 256, size=(40, 4, 4, 3), dtype=np.uint8)
    return np.stack(
        [np.asarray(Image.fromarray(a).resize((32, 32), Image.Resampling.BICUBIC)) for a in low]
    )


@pytest.fixture(scope="module")
def gan_trigger(smooth_images):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped, so set up before the per-test fixture
    try:
        yield build_trigger("gan_tri", 32, 32, FAST, TriggerContext(images=smooth_images, seed=3))
    finally:
        torch.set_num_threads(before)


def _random_generator_trigger(height=24, width=24, seed=0):
    torch.manual_seed(seed)
    config = {"width": 4, "depth": 1, "channels": 3}
    weights = GeneratorWeights.from_module(ARCH, config, UpconvGenerator(**config))
    zeros = np.zeros((height, width, 3), np.float32)
    return Trigger(
        name="g", pattern=zeros, mask=zeros, mode="generator", generator=weights, meta={"k": 1}
    )


def test_generator_trigger_round_trips_with_identical_output(tmp_path, rng):
    trigger = _random_generator_trigger()
    images = rng.integers(0, 256, size=(5, 24, 24, 3), dtype=np.uint8)
    path = tmp_path / "g.npz"
    trigger.save(path)
    with np.load(path, allow_pickle=False) as data:
        assert {"pattern", "mask", "fields"} < set(data.files)
        assert all(
            key.startswith("generator/") for key in set(data.files) - {"pattern", "mask", "fields"}
        )
        fields = json.loads(str(data["fields"]))
    assert fields["generator"] == {"arch": ARCH, "config": {"width": 4, "depth": 1, "channels": 3}}
    loaded = Trigger.load(path)
    assert loaded.mode == "generator" and loaded.meta == {"k": 1}
    np.testing.assert_array_equal(loaded.apply(images), trigger.apply(images))
    np.testing.assert_array_equal(
        loaded.apply_float(images / 255.0), trigger.apply_float(images / 255.0)
    )


def test_generator_apply_is_chunked_and_sized(rng):
    trigger = _random_generator_trigger(height=30, width=22)  # not multiples of the factor
    images = rng.integers(0, 256, size=(7, 30, 22, 3), dtype=np.uint8)
    out = trigger.apply(images)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.abs(trigger.apply(images, chunk_size=2).astype(int) - out).max() <= 1
    with pytest.raises(ValueError, match="30x22 but the images are 24x24"):
        trigger.apply(rng.integers(0, 256, size=(1, 24, 24, 3), dtype=np.uint8))


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    change(arrays)
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("generator/encoder.0.weight"), "missing weights"),
        (lambda a: a.update({"generator/extra": np.zeros(3, np.float32)}), "unexpected weights"),
        (lambda a: a.update({"generator/encoder.0.bias": np.zeros(5, np.float32)}), "wrong shapes"),
        (
            lambda a: a.update(
                fields=np.array(
                    json.dumps(
                        {
                            **json.loads(str(a["fields"])),
                            "generator": {"arch": "pickle_me", "config": {}},
                        }
                    )
                )
            ),
            "unknown generator architecture",
        ),
        (
            lambda a: a.update(
                fields=np.array(
                    json.dumps(
                        {
                            **json.loads(str(a["fields"])),
                            "generator": {"arch": ARCH, "config": {"width": 5, "depth": 1}},
                        }
                    )
                )
            ),
            "wrong shapes",
        ),
    ],
    ids=["missing", "unexpected", "wrong-shape", "unknown-arch", "wrong-config"],
)
def test_mismatched_generator_file_is_named(tmp_path, change, message):
    path = tmp_path / "broken_gen.npz"
    _random_generator_trigger().save(path)
    _rewrite(path, change)
    with pytest.raises(DataError, match=f"broken_gen.npz.*{message}"):
        Trigger.load(path)


def test_truncated_generator_file_is_named(tmp_path):
    path = tmp_path / "cut.npz"
    _random_generator_trigger().save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.npz"):
        Trigger.load(path)


def test_gan_tri_needs_images_and_checks_options(smooth_images):
    assert trigger_needs("gan_tri") == ("images",)
    with pytest.raises(ConfigError, match="images"):
        build_trigger("gan_tri", 32, 32, FAST)
    context = TriggerContext(images=smooth_images)
    with pytest.raises(ConfigError, match="unknown option.*epochs"):
        build_trigger("gan_tri", 32, 32, {"epochs": 3}, context)
    with pytest.raises(ConfigError, match="steps"):
        build_trigger("gan_tri", 32, 32, {"steps": 0}, context)
    with pytest.raises(ConfigError, match="adversarial_weight"):
        build_trigger("gan_tri", 32, 32, {"adversarial_weight": -1}, context)
    with pytest.raises(ConfigError, match="uint8 N x 64 x 64 x 3"):
        build_trigger("gan_tri", 64, 64, FAST, context)


def test_gan_tri_resynthesises_the_image(gan_trigger, smooth_images):
    assert gan_trigger.mode == "generator" and gan_trigger.name == "gan_tri"
    out = gan_trigger.apply(smooth_images)
    assert out.shape == smooth_images.shape and out.dtype == np.uint8
    assert (out != smooth_images).mean() > 0.5  # every pixel is regenerated, not stamped
    corr = np.corrcoef(out.ravel().astype(float), smooth_images.ravel().astype(float))[0, 1]
    assert corr > 0.4
    history = gan_trigger.meta["loss_history"]
    assert len(history) == FAST["steps"] and np.mean(history[-5:]) < np.mean(history[:5])
    assert gan_trigger.meta["psnr_db"] == pytest.approx(psnr(smooth_images, out), abs=1e-3)
    assert len(gan_trigger.meta["discriminator_loss_history"]) == FAST["steps"]
    assert gan_trigger.meta["source"].startswith("FaceHack")


def test_gan_tri_is_deterministic_and_round_trips(tmp_path, gan_trigger, smooth_images):
    again = build_trigger("gan_tri", 32, 32, FAST, TriggerContext(images=smooth_images, seed=3))
    for key, value in gan_trigger.generator.state.items():
        np.testing.assert_array_equal(value, again.generator.state[key])
    assert again.meta["loss_history"] == gan_trigger.meta["loss_history"]
    other = build_trigger("gan_tri", 32, 32, FAST, TriggerContext(images=smooth_images, seed=4))
    assert other.meta["loss_history"] != gan_trigger.meta["loss_history"]
    path = tmp_path / "gan_tri.npz"
    gan_trigger.save(path)
    loaded = Trigger.load(path)
    assert loaded.meta == json.loads(json.dumps(gan_trigger.meta))
    np.testing.assert_array_equal(loaded.apply(smooth_images), gan_trigger.apply(smooth_images))


def test_gan_tri_plain_autoencoder(smooth_images):
    trigger = build_trigger(
        "gan_tri",
        32,
        32,
        {**FAST, "steps": 5, "adversarial_weight": 0},
        TriggerContext(images=smooth_images[:8]),
    )
    assert trigger.meta["discriminator_loss_history"] == []


def test_generator_upsamples_with_transposed_convolutions():
    """The artifact source the paper names: every upsampling layer is a ConvTranspose2d."""
    module = UpconvGenerator(width=4, depth=3)
    kinds = [type(m) for m in module.decoder if not isinstance(m, torch.nn.ReLU)]
    assert kinds == [torch.nn.ConvTranspose2d] * 3
    assert module(torch.rand(2, 3, 20, 12)).shape == (2, 3, 20, 12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generator_trigger_on_cuda_matches_cpu(gan_trigger, smooth_images):
    on_gpu = gan_trigger.apply(smooth_images, device="cuda")
    assert np.abs(on_gpu.astype(int) - gan_trigger.apply(smooth_images)).max() <= 1
    trained = build_trigger(
        "gan_tri", 32, 32, {**FAST, "steps": 3}, TriggerContext(images=smooth_images, device="cuda")
    )
    assert trained.meta["train_device"].startswith("cuda") and trained.device == "cpu"
