"""The authors' published triggers: download via file:// URLs, sha256 checks, insertion rules.

No test needs the network: fake trigger files are written to a temporary folder and the sha256
table is patched to match them. One optional test checks the real files when a local copy of
the authors' folder is present (never copied into the repository).
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from freqbackdoor import official_triggers as official
from freqbackdoor.errors import ChecksumError, ConfigError, DownloadError
from freqbackdoor.io import sha256_file
from freqbackdoor.official_triggers import (
    OFFICIAL_BASE_URL,
    OFFICIAL_FILES,
    fetch_official,
    official_trigger,
)
from freqbackdoor.triggers import build_trigger

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
    }
    assert OFFICIAL_FILES["l0_inv"][0] == ("l0_inv.png", "mask.npy")
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
    with pytest.raises(ConfigError, match="no official trigger 'smooth'"):
        fetch_official("smooth", tmp_path)
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
    nature = official_trigger("nature", [tmp_path / "nature.png"], base_url=base)
    rows = np.nonzero(nature.pattern.any(axis=(1, 2)))[0]
    ours = np.nonzero(build_trigger("nature", 32, 32).mask.any(axis=(1, 2)))[0]
    assert (rows.min(), rows.max()) == (ours.min(), ours.max()) == (18, 29)
