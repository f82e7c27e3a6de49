"""The authors' Keras models as project checkpoints: conversion, refusals, and the real files.

The conversion is tested on HDF5 files this test writes in the Keras 2.2.4 layout from a
PyTorch model with random weights: converting one back must give the model's own outputs.
Where the authors' real files are present (the folder named by ``FREQBACKDOOR_AUTHORS_MODELS``)
the converted models are also checked on embedded photographs.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from freqbackdoor.authors import models as A
from freqbackdoor.data import datasets
from freqbackdoor.detection.detector import Detector, detector_scores
from freqbackdoor.detection.screening import load_detector
from freqbackdoor.errors import ChecksumError, ConfigError, DataError
from freqbackdoor.models.classifier import ReferenceCNN, images_to_tensor
from freqbackdoor.triggers.registry import build_trigger

h5py = pytest.importorskip("h5py")

AUTHORS_FOLDER = os.environ.get("FREQBACKDOOR_AUTHORS_MODELS")


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with random weights and BatchNorm statistics (not the initial 0 / 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.2 + 0.05)
    if isinstance(model, Detector):
        model.mean.zero_()
        model.std.fill_(1.0)
    return model.eval()


def write_keras_file(
    model: torch.nn.Module, path: Path, spec: A.AuthorsModel, drop_last: int = 0
) -> None:
    """``model`` as a Keras 2 HDF5 file in the layout of ``spec``'s published file.

    The inverse of the conversion, written independently: kernels to (kh, kw, in, out), the
    dense layer's rows to Keras' (H, W, C) flatten order. ``drop_last`` leaves out that many
    layers at the end (a truncated file).
    """
    features = model.body.features if isinstance(model, Detector) else model.features
    dense = model.body.classifier if isinstance(model, Detector) else model.classifier
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in features if isinstance(m, torch.nn.BatchNorm2d)]
    layers, described = [], []

    def add(kind, config, weights):
        name = f"{kind.lower()}_{len(layers) + 1}"
        layers.append((name, weights))
        described.append({"class_name": kind, "config": {"name": name, **config}})

    for i, (conv, norm) in enumerate(zip(convs, norms, strict=True)):
        add(
            "Conv2D",
            {"padding": "same"},
            {
                "kernel": conv.weight.detach().numpy().transpose(2, 3, 1, 0),
                "bias": conv.bias.detach().numpy(),
            },
        )
        add("Activation", {"activation": spec.activation}, {})
        add(
            "BatchNormalization",
            {"epsilon": 0.001, "momentum": 0.99},
            {
                "gamma": norm.weight.detach().numpy(),
                "beta": norm.bias.detach().numpy(),
                "moving_mean": norm.running_mean.numpy(),
                "moving_variance": norm.running_var.numpy(),
            },
        )
        if i % 2 == 1:
            add("MaxPooling2D", {"pool_size": [2, 2]}, {})
            add("Dropout", {"rate": spec.dropout[i // 2]}, {})
    add("Flatten", {}, {})
    weight = dense.weight.detach().numpy()  # (out, C*H*W)
    kernel = weight.reshape(-1, 128, 4, 4).transpose(2, 3, 1, 0).reshape(2048, -1)
    add("Dense", {"activation": "softmax"}, {"kernel": kernel, "bias": dense.bias.detach().numpy()})
    if drop_last:
        layers, described = layers[:-drop_last], described[:-drop_last]
    with h5py.File(path, "w") as handle:
        config = {"class_name": "Sequential", "config": {"name": "m", "layers": described}}
        handle.attrs["model_config"] = json.dumps(config).encode()
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name, _ in layers]
        for name, weights in layers:
            layer = group.create_group(name)
            names = [f"{name}_1/{w}:0" for w in weights]
            layer.attrs["weight_names"] = [n.encode() for n in names]
            for stored, value in zip(names, weights.values(), strict=True):
                layer.create_dataset(stored, data=np.asarray(value, dtype=np.float32))


@pytest.fixture
def detector_file(tmp_path):
    model = randomised(Detector(body="cnn6_kmax128", domain="dct"))
    path = tmp_path / "detector.h5py"
    write_keras_file(model, path, A.AUTHORS_MODELS["authors_cifar10"])
    return model, path


def test_registry_names_the_published_files():
    assert set(A.AUTHORS_MODELS) == {
        "authors_cifar10",
        "authors_cifar10_tuned",
        "authors_cifar10_classifier",
    }
    assert A.authors_model("authors-cifar10-tuned").file == "Tuned_CIFAR10.h5py"
    assert all(len(m.sha256) == 64 for m in A.AUTHORS_MODELS.values())
    assert A.AUTHORS_MODELS["authors_cifar10"].url.endswith(
        "Sec4_Frequency_Detection/detector/6_CNN_CIF1R10.h5py"
    )
    with pytest.raises(ConfigError, match="authors-cifar10-tuned"):
        A.authors_model("authors-gtsrb")


def test_converted_detector_gives_the_original_outputs(detector_file):
    model, path = detector_file
    converted = A.convert_keras_model(path, "authors_cifar10")
    assert isinstance(converted, Detector) and not converted.training
    inputs = torch.randn(8, 3, 32, 32) * 50
    with torch.no_grad():
        torch.testing.assert_close(converted(inputs), model(inputs), rtol=1e-5, atol=1e-5)
    # raw DCT coefficients go in as they are: the standardisation is the identity
    assert float(converted.mean.abs().max()) == 0 and float((converted.std - 1).abs().max()) == 0


def test_converted_classifier_gives_the_original_outputs(tmp_path):
    model = randomised(ReferenceCNN(10, 32), seed=3)
    path = tmp_path / "classifier.h5"
    write_keras_file(model, path, A.AUTHORS_MODELS["authors_cifar10_classifier"])
    converted = A.convert_keras_model(path, "authors_cifar10_classifier")
    inputs = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(converted(inputs), model(inputs), rtol=1e-5, atol=1e-5)


def test_flatten_order_matters(detector_file):
    """A conversion that kept Keras' row order would not reproduce the outputs."""
    model, path = detector_file
    converted = A.convert_keras_model(path, "authors_cifar10")
    with torch.no_grad():
        converted.body.classifier.weight.copy_(
            converted.body.classifier.weight.reshape(2, 4, 4, 128)
            .permute(0, 3, 1, 2)
            .reshape(2, -1)
        )
        inputs = torch.randn(8, 3, 32, 32) * 50
        assert not torch.allclose(converted(inputs), model(inputs), atol=1e-3)


def test_truncated_file_is_refused_naming_the_layer(tmp_path):
    model = randomised(Detector(body="cnn6_kmax128", domain="dct"))
    path = tmp_path / "truncated.h5py"
    write_keras_file(model, path, A.AUTHORS_MODELS["authors_cifar10"], drop_last=2)
    with pytest.raises(DataError, match=r"truncated\.h5py: ends after 24 layers.*Flatten"):
        A.convert_keras_model(path, "authors_cifar10")


def test_reshaped_layer_is_refused_naming_it(tmp_path):
    model = randomised(Detector(body="cnn6_kmax128", domain="dct"))
    path = tmp_path / "reshaped.h5py"
    write_keras_file(model, path, A.AUTHORS_MODELS["authors_cifar10"])
    with h5py.File(path, "a") as handle:
        del handle["model_weights/conv2d_4/conv2d_4_1/kernel:0"]
        handle["model_weights/conv2d_4"].create_dataset(
            "conv2d_4_1/kernel:0", data=np.zeros((5, 5, 32, 32), np.float32)
        )
    with pytest.raises(DataError, match=r"layer conv2d_4 .*kernel has shape \(5, 5, 32, 32\)"):
        A.convert_keras_model(path, "authors_cifar10")


def test_other_layout_is_refused(detector_file, tmp_path):
    _, path = detector_file
    # the detector's file is not the classifier's layout (ELU, not ReLU)
    with pytest.raises(DataError, match=r"layer activation_2 .*'elu', expected 'relu'"):
        A.convert_keras_model(path, "authors_cifar10_classifier")
    not_hdf5 = tmp_path / "x.h5"
    not_hdf5.write_bytes(b"not an HDF5 file")
    with pytest.raises(DataError, match="x.h5: not a readable HDF5 file"):
        A.convert_keras_model(not_hdf5, "authors_cifar10")


def test_files_are_verified_by_sha256(detector_file, tmp_path):
    _, path = detector_file
    folder = tmp_path / "placed"
    folder.mkdir()
    assert A.placed_file("authors_cifar10", folder) is None
    with pytest.raises(DataError, match=r"placed/6_CNN_CIF1R10\.h5py: .*is not there.*3abdc218"):
        A.authors_model_file("authors_cifar10", folder, download=False)
    (folder / "6_CNN_CIF1R10.h5py").write_bytes(path.read_bytes())  # another file, same name
    with pytest.raises(DataError, match="is not the published 3abdc218"):
        A.placed_file("authors_cifar10", folder)
    # a mirror serving the wrong bytes: refused, nothing left behind
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "Tuned_CIFAR10.h5py").write_bytes(path.read_bytes())
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        A.authors_model_file("authors_cifar10_tuned", folder, base_url=mirror.as_uri())
    assert not (folder / "Tuned_CIFAR10.h5py").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["6_CNN_CIF1R10.h5py"]
    # importing a file that is not the published one is refused before anything is written
    with pytest.raises(DataError, match="is not the published"):
        A.import_authors_model("authors_cifar10", path, tmp_path / "a.pt", tmp_path / "a.json")
    assert not (tmp_path / "a.pt").exists()


# --------------------------------------------------------------------------- the real files


def _real(name: str) -> Path:
    if not AUTHORS_FOLDER:
        pytest.skip("FREQBACKDOOR_AUTHORS_MODELS is not set: the authors' model files are absent")
    path = A.placed_file(name, AUTHORS_FOLDER)
    if path is None:
        pytest.skip(f"{AUTHORS_FOLDER} has no {A.AUTHORS_MODELS[name].file}")
    return path


@pytest.fixture(scope="module")
def embedded_photos(tmp_path_factory):
    """Held-out 32 px crops of scikit-image's photographs (not CIFAR-10)."""
    root = tmp_path_factory.mktemp("photos")
    spec = {"source": "embedded_photos", "size": 32, "train_per_class": 10, "test_per_class": 40}
    datasets.prepare("photos", spec, root / "raw", root / "data", 0)
    return np.load(root / "data" / "x_test.npy")


def test_real_detectors_flag_triggers_far_above_their_clean_fpr(tmp_path, embedded_photos):
    for name in A.AUTHORS_DETECTORS:
        source = _real(name)
        checkpoint = tmp_path / f"{name}.pt"
        meta = A.import_authors_model(name, source, checkpoint, checkpoint.with_suffix(".json"))
        assert meta["dataset"] == A.AUTHORS_DATASET and meta["threshold"] == 0.5
        assert meta["provenance"]["sha256"] == A.AUTHORS_MODELS[name].sha256
        model, _ = load_detector(checkpoint)
        fpr = float((detector_scores(model, embedded_photos) >= 0.5).mean())
        # BadNets needs no file: the authors define it in code exactly as this project does
        badnets = build_trigger("badnets", 32, 32, {"size": 4, "margin": 1})
        bdr = float((detector_scores(model, badnets.apply(embedded_photos)) >= 0.5).mean())
        assert bdr >= 0.85 and bdr >= fpr + 0.35, (name, bdr, fpr)


def test_real_classifier_is_pushed_to_label_6_by_the_published_smooth_trigger(embedded_photos):
    """The authors' smooth trigger was searched on this classifier; its dominant label is 6."""
    from freqbackdoor.authors.triggers import fetch_official, official_trigger

    model = A.convert_keras_model(_real("authors_cifar10_classifier"), "authors_cifar10_classifier")
    official = Path(AUTHORS_FOLDER).parent / "official-triggers"
    if not (official / "best_universal.npy").is_file():
        pytest.skip(f"{official} has no best_universal.npy (the published smooth trigger)")
    trigger = official_trigger("smooth", fetch_official("smooth", official))
    with torch.no_grad():
        before = model(images_to_tensor(embedded_photos)).argmax(1).numpy()
        after = model(images_to_tensor(trigger.apply(embedded_photos))).argmax(1).numpy()
    assert (after == 6).mean() >= (before == 6).mean() + 0.1


def test_screen_names_the_missing_authors_file(tmp_path, monkeypatch, capsys):
    """Offline and not placed: exit status 2 and where to put the file; nothing written."""
    import urllib.request

    from freqbackdoor.__main__ import main

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    images = tmp_path / "x.npy"
    np.save(images, np.zeros((2, 32, 32, 3), np.uint8))
    folder = tmp_path / "models"
    output = tmp_path / "s.csv"
    argv = ["screen", str(images), "--detector", "authors-cifar10-tuned", "-o", str(output)]
    assert main([*argv, "--authors-models", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "cannot download" in error and str(folder / "Tuned_CIFAR10.h5py") in error
    assert not output.exists() and not list(folder.glob("*"))


def test_screen_with_the_real_authors_detector(tmp_path, embedded_photos, capsys):
    from freqbackdoor.__main__ import main

    _real("authors_cifar10")
    images = tmp_path / "x.npy"
    np.save(images, embedded_photos)
    output = tmp_path / "s.csv"
    argv = ["screen", str(images), "--detector", "authors-cifar10", "-o", str(output)]
    assert main([*argv, "--authors-models", AUTHORS_FOLDER, "--device", "cpu"]) == 0
    summary = json.loads(output.with_suffix(".summary.json").read_text())
    assert summary["threshold"] == 0.5 and summary["threshold_source"].startswith("the authors'")
    assert summary["detector_dataset"] == "authors_cifar10" and summary["scored"] == len(
        embedded_photos
    )
