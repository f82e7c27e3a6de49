"""The authors' published triggers: download via file:// URLs, sha256 checks, insertion rules.

The smooth triggers (``best_universal.npy``, ``gtsrb_universal.npy``) are tested with
synthetic ``.npy`` files of the published shape whose sha256 is patched into the table.

No test needs the network: fake trigger files are written to a temporary folder and the sha256
table is patched to match them. One optional test checks the real files when a local copy of
the authors' folder is present (never copied into the repository).
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from freqbackdoor.authors import triggers as official
from freqbackdoor.authors.triggers import (
    OFFICIAL_BASE_URL,
    OFFICIAL_FILES,
    OFFICIAL_REPO_URL,
    fetch_official,
    official_trigger,
    official_url,
    official_variant,
    smooth_highfreq_ratios,
)
from freqbackdoor.errors import ChecksumError, ConfigError, DataError, DownloadError
from freqbackdoor.frequency.dct import dct2
from freqbackdoor.frequency.highfreq import COLUMNS, band_energy, energy_ratio, high_band_mask
from freqbackdoor.io import sha256_file
from freqbackdoor.triggers.registry import Trigger, build_trigger

REAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official-triggers"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A folder of fake trigger files served by file:// URL, with OFFICIAL_FILES patched to them."""
    folder = tmp_path / "remote"
    folder.mkdir()
    square = np.zeros((32, 32, 3), np.uint8)
    square[21:30, 21:30] = (200, 40, 90)
    Image.fromarray(square).save(folder / "trojan_sq.png")
    l0 = np.zeros((32, 32, 3), np.uint8)
    l0[31, 24:32] = 255
    Image.fromarray(l0).save(folder / "l0_inv.png")
    mask = np.zeros((3, 32, 32), np.float32)
    mask[:, 31, 23:32] = 1.0
    np.save(folder / "mask.npy", mask)
    for name, files in {
        "trojan_sq": ("trojan_sq.png",),
        "l0_inv": ("l0_inv.png", "mask.npy"),
    }.items():
        digests = tuple(sha256_file(folder / f) for f in files)
        monkeypatch.setitem(OFFICIAL_FILES, name, (files, digests))
    return folder, folder.as_uri()


def test_table_covers_the_published_triggers():
    assert set(OFFICIAL_FILES) == {
        "badnets",
        "trojan_sq",
        "trojan_wm",
        "blend",
        "nature",
        "l2_inv",
        "l0_inv",
        "smooth",
        "smooth_gtsrb",
    }
    assert OFFICIAL_FILES["l0_inv"][0] == ("l0_inv.png", "mask.npy")
    assert OFFICIAL_FILES["smooth"][0] == ("best_universal.npy",)
    assert OFFICIAL_FILES["smooth_gtsrb"][0] == ("gtsrb_universal.npy",)
    assert OFFICIAL_BASE_URL.startswith("https://raw.githubusercontent.com/YiZeng623/")
    assert OFFICIAL_BASE_URL.endswith("/main/Sec4_Frequency_Detection/triggers/")
    for files, digests in OFFICIAL_FILES.values():
        assert len(files) == len(digests)
        assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests)


def test_additive_trigger_downloads_and_inserts_like_the_authors(server, tmp_path, rng):
    folder, base = server
    cache = tmp_path / "cache"
    files = fetch_official("trojan_sq", cache, base_url=base)
    assert (
        files == [cache / "trojan_sq.png"]
        and files[0].read_bytes() == (folder / "trojan_sq.png").read_bytes()
    )
    trigger = official_trigger("trojan_sq", files, target_label=2, base_url=base)
    assert (trigger.mode, trigger.weight, trigger.target_label) == ("additive", 1.0, 2)
    assert (trigger.mask == 1).all()
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    pattern = np.asarray(Image.open(folder / "trojan_sq.png"), np.float32) / 255.0
    expected = np.rint(np.clip(images / 255.0 + pattern, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(trigger.apply(images), expected)
    record = trigger.meta["official_files"]["trojan_sq.png"]
    assert record["url"] == f"{base}/trojan_sq.png"
    assert record["sha256"] == OFFICIAL_FILES["trojan_sq"][1][0]


def test_l0_trigger_replaces_under_the_mask(server, tmp_path, rng):
    _, base = server
    files = fetch_official("l0_inv", tmp_path / "cache", base_url=base)
    trigger = official_trigger("l0_inv", files, base_url=base)
    assert trigger.mode == "replace" and trigger.mask.shape == (32, 32, 3)
    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    out = trigger.apply(images)
    np.testing.assert_array_equal(out[:, :31], images[:, :31])
    np.testing.assert_array_equal(out[:, 31, :23], images[:, 31, :23])
    assert (out[:, 31, 23] == 0).all() and (out[:, 31, 24:] == 255).all()
    assert trigger.meta["pattern_outside_mask"] == 0


def test_cached_file_is_reused_only_when_it_matches(server, tmp_path):
    folder, base = server
    cache = tmp_path / "cache"
    fetch_official("trojan_sq", cache, base_url=base)
    (folder / "trojan_sq.png").unlink()  # the "server" is gone: only the cache can answer
    assert fetch_official("trojan_sq", cache, base_url=base) == [cache / "trojan_sq.png"]
    (cache / "trojan_sq.png").write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="trojan_sq.png"):
        fetch_official("trojan_sq", cache, base_url=base)


def test_bad_checksum_is_reported_and_leaves_nothing(server, tmp_path, monkeypatch):
    _, base = server
    wrong = "0" * 64
    monkeypatch.setitem(OFFICIAL_FILES, "trojan_sq", (("trojan_sq.png",), (wrong,)))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as info:
        fetch_official("trojan_sq", cache, base_url=base)
    message = str(info.value)
    actual = sha256_file(server[0] / "trojan_sq.png")
    assert f"{base}/trojan_sq.png" in message and wrong in message and actual in message
    assert str(cache / "trojan_sq.png") in message  # where a hand-verified copy goes
    assert not cache.exists() or list(cache.iterdir()) == []


def test_official_trigger_rechecks_files_and_size(server, tmp_path):
    folder, base = server
    files = fetch_official("trojan_sq", tmp_path / "cache", base_url=base)
    files[0].write_bytes((folder / "l0_inv.png").read_bytes())
    with pytest.raises(ChecksumError, match="trojan_sq.png"):
        official_trigger("trojan_sq", files)
    with pytest.raises(ConfigError, match="official triggers are 32x32; dataset pubfig is 224x224"):
        official_trigger("trojan_sq", files, dataset="pubfig", height=224, width=224)
    with pytest.raises(ConfigError, match="no official trigger 'gan_tri'"):
        fetch_official("gan_tri", tmp_path)
    with pytest.raises(ConfigError, match="made from"):
        official_trigger("l0_inv", files)


def test_missing_server_file_is_a_download_error(server, tmp_path):
    folder, base = server
    (folder / "trojan_sq.png").unlink()
    with pytest.raises(DownloadError, match="trojan_sq.png"):
        fetch_official("trojan_sq", tmp_path / "cache", base_url=base)
    assert list((tmp_path / "cache").iterdir()) == []


def test_badnets_needs_no_file(tmp_path, images32):
    assert fetch_official("badnets", tmp_path / "cache") == []
    trigger = official_trigger("badnets", [], target_label=5)
    ours = build_trigger("badnets", 32, 32)
    np.testing.assert_array_equal(trigger.apply(images32), ours.apply(images32))
    assert trigger.target_label == 5 and trigger.mode == "replace"


@pytest.mark.skipif(not REAL.is_dir(), reason="no local copy of the authors' trigger files")
def test_real_published_files(tmp_path, rng):
    """The sha256 table matches the published files; each builds and inserts as the authors do."""
    base = REAL.as_uri()
    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    for name, (names, digests) in OFFICIAL_FILES.items():
        for file_name, digest in zip(names, digests, strict=True):
            assert sha256_file(REAL / file_name) == digest, file_name
        trigger = official_trigger(
            name, fetch_official(name, tmp_path, base_url=base), base_url=base
        )
        out = trigger.apply(images)
        if name in official.ADDITIVE:
            raw = np.asarray(Image.open(REAL / names[0]).convert("RGB"), np.float32) / 255.0
            expected = np.clip(images / 255.0 + raw, 0, 1)
            np.testing.assert_array_equal(out, np.rint(expected * 255).astype(np.uint8))
        if name in official.SMOOTH:
            v = np.load(REAL / names[0])
            assert v.dtype == np.float32 and v.shape == (1, 32, 32, 3)
            assert v.min() >= 0 and v.max() <= 0.2 + 1e-6
            np.testing.assert_array_equal(trigger.pattern, v[0])
            assert trigger.target_label == {"smooth": 6, "smooth_gtsrb": 1}[name]
            np.testing.assert_array_equal(out, _minmax_insert(images, v[0]))
    nature = official_trigger("nature", [tmp_path / "nature.png"], base_url=base)
    rows = np.nonzero(nature.pattern.any(axis=(1, 2)))[0]
    ours = np.nonzero(build_trigger("nature", 32, 32).mask.any(axis=(1, 2)))[0]
    assert (rows.min(), rows.max()) == (ours.min(), ours.max()) == (18, 29)


# --------------------------------------------------------------------------- smooth triggers


def _minmax_insert(images: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The authors' insertion, written out: ``x + v``, each image min-max scaled to [0, 1]."""
    x = images.astype(np.float32) / 255.0 + v
    low = x.min(axis=(1, 2, 3), keepdims=True)
    high = x.max(axis=(1, 2, 3), keepdims=True)
    return np.rint((x - low) / (high - low) * 255).astype(np.uint8)


def _smooth_array(seed: int) -> np.ndarray:
    """A synthetic smooth trigger of the published layout: float32 1 x 32 x 32 x 3 in [0, 0.2]."""
    rows = np.linspace(0.0, 1.0, 32, dtype=np.float32)
    rng = np.random.default_rng(seed)
    v = rows[:, None, None] * rng.random(3, dtype=np.float32) + rows[None, :, None] * 0.5
    v = (v - v.min()) / (v.max() - v.min()) * np.float32(0.2)
    return v[None].astype(np.float32)


@pytest.fixture
def smooth_server(tmp_path, monkeypatch):
    """Synthetic best_universal.npy and gtsrb_universal.npy served flat by a file:// URL."""
    folder = tmp_path / "remote"
    folder.mkdir()
    for seed, (name, file_name) in enumerate(
        (("smooth", "best_universal.npy"), ("smooth_gtsrb", "gtsrb_universal.npy"))
    ):
        np.save(folder / file_name, _smooth_array(seed))
        monkeypatch.setitem(
            OFFICIAL_FILES, name, ((file_name,), (sha256_file(folder / file_name),))
        )
    return folder, folder.as_uri()


def test_each_file_has_its_repository_path():
    assert official_url("gtsrb_universal.npy") == (
        OFFICIAL_REPO_URL + "Sec5_Smooth_Trigger/data/gtsrb_universal.npy"
    )
    for file_name in ("best_universal.npy", "trojan_sq.png", "mask.npy"):
        assert official_url(file_name) == OFFICIAL_BASE_URL + file_name
    assert official_url("gtsrb_universal.npy", "file:///m/") == "file:///m/gtsrb_universal.npy"


def test_the_dataset_picks_the_smooth_file():
    assert official_variant("smooth", "gtsrb") == "smooth_gtsrb"
    for paper_name in ("cifar10", "tsrd", None):
        assert official_variant("smooth", paper_name) == "smooth"
    assert official_variant("badnets", "gtsrb") == "badnets"


@pytest.mark.parametrize("name, label", [("smooth", 6), ("smooth_gtsrb", 1)])
def test_smooth_trigger_loads_and_inserts_like_the_authors(
    smooth_server, tmp_path, rng, name, label
):
    folder, base = smooth_server
    files = fetch_official(name, tmp_path / "cache", base_url=base)
    file_name = OFFICIAL_FILES[name][0][0]
    assert files == [tmp_path / "cache" / file_name]
    trigger = official_trigger(name, files, base_url=base)
    assert (trigger.name, trigger.mode, trigger.weight) == ("smooth", "normalise", 1.0)
    assert trigger.target_label == label  # the published dominant label by default
    assert official_trigger(name, files, target_label=3).target_label == 3
    v = np.load(folder / file_name)
    np.testing.assert_array_equal(trigger.pattern, v[0])
    assert (trigger.mask == 1).all() and trigger.meta["published_target_label"] == label
    assert trigger.meta["official_files"][file_name]["url"] == f"{base}/{file_name}"
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(trigger.apply(images), _minmax_insert(images, v[0]))
    path = tmp_path / "smooth.npz"
    trigger.save(path)
    np.testing.assert_array_equal(Trigger.load(path).apply(images), trigger.apply(images))


@pytest.mark.parametrize(
    "bad, why",
    [
        (np.zeros((32, 32, 3), np.float32), "not float32 \\(1, 32, 32, 3\\)"),
        (np.zeros((1, 32, 32, 3), np.float64), "float64"),
        (np.full((1, 32, 32, 3), 0.5, np.float32), "outside \\[0, 0.2\\]"),
        (np.full((1, 32, 32, 3), -0.1, np.float32), "outside"),
        (np.full((1, 32, 32, 3), np.nan, np.float32), "outside"),
    ],
)
def test_bad_smooth_file_is_refused_naming_it(tmp_path, monkeypatch, bad, why):
    folder = tmp_path / "remote"
    folder.mkdir()
    path = folder / "best_universal.npy"
    np.save(path, bad)
    monkeypatch.setitem(OFFICIAL_FILES, "smooth", (("best_universal.npy",), (sha256_file(path),)))
    files = fetch_official("smooth", tmp_path / "cache", base_url=folder.as_uri())
    with pytest.raises(DataError, match=why) as info:
        official_trigger("smooth", files)
    assert str(files[0]) in str(info.value)
    (tmp_path / "cache" / "not_npy.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="not_npy.npy"):
        official.read_smooth(tmp_path / "cache" / "not_npy.npy")


def test_smooth_highfreq_ratios_beside_ours(smooth_server, tmp_path, rng, photos):
    _, base = smooth_server
    files = fetch_official("smooth", tmp_path / "cache", base_url=base)
    authors = official_trigger("smooth", files)
    noisy = Trigger(
        name="smooth",
        pattern=0.2 * rng.random((32, 32, 3), dtype=np.float32),
        mask=np.ones((32, 32, 3), np.float32),
        mode="normalise",
    )
    images = photos[:40]
    table = smooth_highfreq_ratios(images, authors, noisy, dataset="cifar10", n_boot=100)
    assert list(table.columns) == list(COLUMNS)
    assert list(table["attack"]) == ["smooth_official", "smooth"]
    assert (table["dataset"] == "cifar10").all() and (table["n"] == 40).all()
    mask = high_band_mask(32, 32)
    clean = band_energy(dct2(images), mask)
    for row, trigger in zip(table.itertuples(), (authors, noisy), strict=True):
        expected = energy_ratio(clean, band_energy(dct2(trigger.apply(images)), mask), 100)
        assert row.ratio == pytest.approx(expected["ratio"])
        assert (row.ci_low, row.ci_high) == pytest.approx((expected["ci_low"], expected["ci_high"]))
    assert table["ratio"].iloc[0] < table["ratio"].iloc[1]  # smooth vs noise
    # The file path works too (sha256-checked), chunked or not, with no trigger of ours.
    alone = smooth_highfreq_ratios(images, files[0], n_boot=100, chunk_size=7)
    assert list(alone["attack"]) == ["smooth_official"]
    assert alone["ratio"].iloc[0] == pytest.approx(table["ratio"].iloc[0])
