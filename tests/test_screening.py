"""`freqbackdoor screen`: a trained detector flags triggered images in a user's folder."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from freqbackdoor.__main__ import main
from freqbackdoor.detection.detector import DetectorSettings, train_detector
from freqbackdoor.detection.screening import (
    choose_threshold,
    find_images,
    load_detector,
    pipeline_detector,
    screen_array,
)
from freqbackdoor.errors import DataError
from freqbackdoor.models.checkpoints import save_checkpoint
from freqbackdoor.models.classifier import build_model
from freqbackdoor.triggers.registry import TriggerContext, build_trigger


@pytest.fixture(scope="module")
def detector(photos, tmp_path_factory):
    """A small DCT detector trained on manipulations only (no trigger seen), saved as the
    pipeline saves one: ``results/detectors/toy/cnn3_kmax32_dct.pt`` with its sidecar."""
    settings = DetectorSettings(architecture="cnn3_kmax32", epochs=3, batch_size=32, lr=3e-3)
    model, _ = train_detector(photos[:256], settings, "dct", device="cpu")
    results = tmp_path_factory.mktemp("results")
    path = results / "detectors" / "toy" / "cnn3_kmax32_dct.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(model, path, path.with_suffix(".json"), meta={"dataset": "toy"})
    return results, path


@pytest.fixture(scope="module")
def folder(photos, tmp_path_factory):
    """32 clean and 32 BadNets images as PNGs in two subfolders, plus one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    clean = photos[256:288]
    badnets = build_trigger("badnets", 32, 32, {}, TriggerContext()).apply(clean)
    for name, images in (("clean", clean), ("triggered", badnets)):
        (root / name).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / name / f"{i:02d}.png")
    (root / "clean" / "broken.png").write_bytes(b"not a png at all")
    (root / "notes.txt").write_text("not an image, skipped")
    return root


def test_screen_flags_triggered_images_and_names_the_unreadable_one(detector, folder, capsys):
    results, _ = detector
    out = folder.parent / "scores.csv"
    code = main(
        ["screen", str(folder), "--dataset", "toy", "--results", str(results), "-o", str(out)]
    )
    assert code == 1  # one unreadable image; the rest were still scored
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "flagged" in captured.out
    table = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert len(table) == 65 and list(table.columns) == ["file", "score", "flagged", "error"]
    broken = table[table.file.str.endswith("broken.png")].iloc[0]
    assert np.isnan(broken.score) and "cannot read image" in broken.error
    scored = table.dropna(subset=["score"])
    is_triggered = scored.file.str.contains("/triggered/")
    clean_rate = scored.loc[~is_triggered, "flagged"].astype(bool).mean()
    triggered_rate = scored.loc[is_triggered, "flagged"].astype(bool).mean()
    assert triggered_rate > clean_rate + 0.3
    assert scored.loc[is_triggered, "score"].mean() > scored.loc[~is_triggered, "score"].mean()
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["images"] == 65 and summary["unreadable"] == 1 and summary["scored"] == 64
    assert summary["flagged"] == int(scored.flagged.astype(bool).sum())
    assert summary["detector_dataset"] == "toy" and summary["threshold"] == 0.5


def test_screen_scores_an_npy_array_like_the_folder(detector, folder, photos, tmp_path):
    _, path = detector
    clean = photos[256:288]
    np.save(tmp_path / "x.npy", clean)
    out = tmp_path / "s.csv"
    args = ["screen", str(tmp_path / "x.npy"), "--detector", str(path), "-o", str(out)]
    assert main([*args, "--threshold", "0.9"]) == 0
    table = pd.read_csv(out)
    assert table.file.tolist()[:2] == ["x.npy[0]", "x.npy[1]"]
    from_folder = pd.read_csv(folder.parent / "scores.csv").dropna(subset=["score"])
    from_folder = from_folder[from_folder.file.str.contains("/clean/")]
    np.testing.assert_allclose(table.score.to_numpy(), from_folder.score.to_numpy(), atol=1e-6)
    assert (table.flagged == (table.score >= 0.9)).all()


def test_images_of_another_size_are_resized(detector, photos):
    model, meta = load_detector(detector[1], device="cpu")
    big = np.repeat(np.repeat(photos[:4], 2, axis=1), 2, axis=2)  # 64 px
    table = screen_array(model, big, 0.5, name="big")
    assert len(table) == 4 and table.score.between(0, 1).all()
    with pytest.raises(DataError, match="uint8"):
        screen_array(model, big.astype(np.float32), 0.5, name="big")


def test_threshold_choice():
    assert choose_threshold({}, 0.7) == (0.7, "given")
    calibrated = {"calibration": {"threshold": 0.93, "target_fpr": 0.05}}
    assert choose_threshold(calibrated, None)[0] == 0.93
    assert choose_threshold({"calibration": {"threshold": None}}, None)[0] == 0.5
    with pytest.raises(DataError, match="1.5"):
        choose_threshold({}, 1.5)


def test_errors_name_the_culprit(detector, tmp_path, capsys):
    results, _ = detector
    with pytest.raises(DataError, match="no image files"):
        find_images(tmp_path)
    with pytest.raises(DataError, match="toy"):  # lists the datasets that have detectors
        pipeline_detector(results, "cifar10")
    with pytest.raises(DataError, match="no upgraded detector"):
        pipeline_detector(results, "toy", upgraded=True)
    classifier = build_model("reference_cnn", 10, 32)
    save_checkpoint(classifier, tmp_path / "c.pt", tmp_path / "c.json")
    with pytest.raises(DataError, match="not a detector"):
        load_detector(tmp_path / "c.pt")
    with pytest.raises(DataError, match="missing.pt"):
        load_detector(tmp_path / "missing.pt")
    code = main(
        [
            "screen",
            str(tmp_path),
            "--detector",
            str(tmp_path / "c.pt"),
            "-o",
            str(tmp_path / "x.csv"),
        ]
    )
    assert code == 2 and "not a detector" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_paths_that_are_no_image_files_each_get_a_row_saying_why(detector, photos, tmp_path):
    """Dangling and looping links and a folder named like an image: a row each, not silence."""
    results, _ = detector
    root = tmp_path / "mixed"
    root.mkdir()
    Image.fromarray(photos[0]).save(root / "good.png")
    (root / "dangling.png").symlink_to(root / "gone.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "folder.png").mkdir()
    (root / ".hidden.png").write_bytes(b"skipped: hidden")
    out = tmp_path / "scores.csv"
    code = main(["screen", str(root), "--detector", str(results / "detectors/toy/cnn3_kmax32_dct.pt"), "-o", str(out)])  # fmt: skip
    assert code == 1
    table = pd.read_csv(out, keep_default_na=False, na_values=[""]).set_index("file")
    assert len(table) == 4 and not np.isnan(table.loc[str(root / "good.png"), "score"])
    errors = {Path(f).name: e for f, e in table["error"].items()}
    assert "dangling symbolic link" in errors["dangling.png"]
    assert "symbolic link loop" in errors["loop.png"]
    assert "folder named like an image" in errors["folder.png"]


def test_an_unwritable_output_is_a_usage_error_before_any_scoring(detector, folder, tmp_path, capsys):  # fmt: skip
    results, _ = detector
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for output in (blocker / "scores.csv", tmp_path):  # a folder that cannot exist; a folder
        code = main(["screen", str(folder), "--dataset", "toy", "--results", str(results), "-o", str(output)])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and f"cannot write -o {output}" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_detector_copied_under_another_name_is_refused(detector, folder, tmp_path, capsys):
    results, path = detector
    copy = tmp_path / "renamed.pt"
    copy.write_bytes(path.read_bytes())
    copy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    code = main(["screen", str(folder), "--detector", str(copy), "-o", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "renamed.json: checkpoint is 'cnn3_kmax32_dct.pt'" in err
    with pytest.raises(DataError, match="dataset is 'toy' but .* expect 'other'"):
        load_detector(path, dataset="other")
