"""freqbackdoor.data.datasets: every source on small data, offline (file:// URLs, fake torchvision)."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from freqbackdoor.data import datasets as D
from freqbackdoor.errors import ChecksumError, ConfigError, DataError, DownloadError
from freqbackdoor.io import sha256_array, sha256_file

OUTPUTS = ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "meta.json")


def _photos(size=32, train=8, test=4, **extra):
    return {"source": "embedded_photos", "size": size, "train_per_class": train,
            "test_per_class": test, **extra}  # fmt: skip


def _png_bytes(color, size=(10, 7), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def _overlap(a, b) -> bool:
    """Whether boxes [x0, y0, x1, y1] share any pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _leftovers(raw: Path) -> list[str]:
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


# --------------------------------------------------------------------------------------------
# embedded_photos / embedded_digits
# --------------------------------------------------------------------------------------------


def test_photos_shapes_labels_counts_and_meta(tmp_path):
    raw = D.download("ph", _photos(), tmp_path / "raw")
    assert raw == tmp_path / "raw" / "ph"
    assert json.loads((raw / "SOURCE.json").read_text())["source"] == "embedded_photos"
    meta = D.prepare("ph", _photos(), tmp_path / "raw", tmp_path / "out", seed=0)
    k = len(D.DEFAULT_PHOTOS)
    assert k >= 4 and meta["classes"] == list(D.DEFAULT_PHOTOS) and meta["num_classes"] == k
    assert meta["counts"] == {"train": 8 * k, "test": 4 * k}
    assert meta["class_counts"] == {"train": [8] * k, "test": [4] * k}
    x, y = D.load_split(tmp_path / "out", "train")
    xt, yt = D.load_split(tmp_path / "out", "test")
    assert x.shape == (8 * k, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and xt.shape == (4 * k, 32, 32, 3)
    assert sorted(set(y.tolist())) == list(range(k)) == sorted(set(yt.tolist()))
    assert meta["sha256"]["x_train"] == sha256_array(np.asarray(x))
    assert meta == json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["spec"] == _photos() and meta["size"] == 32
    assert x.std() > 10  # real image content, not a constant


def test_photos_are_deterministic_per_seed(tmp_path):
    spec = _photos(train=3, test=2, photos=["astronaut", "coffee"])
    a = D.prepare("ph", spec, tmp_path, tmp_path / "a", seed=1)
    b = D.prepare("ph", spec, tmp_path, tmp_path / "b", seed=1)
    c = D.prepare("ph", spec, tmp_path, tmp_path / "c", seed=2)
    assert a["sha256"] == b["sha256"]
    assert a["sha256"]["x_train"] != c["sha256"]["x_train"]
    assert a["sha256"]["x_test"] != c["sha256"]["x_test"]


def test_photo_train_and_test_crops_come_from_disjoint_regions(tmp_path):
    meta = D.prepare("ph", _photos(train=40, test=20), tmp_path, tmp_path / "o", seed=3)
    records = meta["provenance"]["photos"]
    assert [r["photo"] for r in records] == meta["classes"]
    for r in records:
        train, test = r["train"], r["test"]
        assert not _overlap(train["region"], test["region"])
        assert not _overlap(train["extent"], test["extent"])
        for part in (train, test):
            (x0, y0, x1, y1), (e0, f0, e1, f1) = part["region"], part["extent"]
            assert x0 <= e0 < e1 <= x1 and y0 <= f0 < f1 <= y1
        height, width = r["shape"]
        assert train["region"][2:] == [width, height] or test["region"][2:] == [width, height]


def test_photos_at_224_and_custom_photo_list(tmp_path):
    spec = _photos(size=224, train=3, test=2, photos=["rocket", "retina"], test_fraction=0.4)
    meta = D.prepare("big", spec, tmp_path, tmp_path / "o", seed=0)
    x, y = D.load_split(tmp_path / "o", "test", mmap=False)
    assert x.shape == (4, 224, 224, 3) and meta["classes"] == ["rocket", "retina"]
    assert y.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(
    ("photos", "match"),
    [(["astronaut", "no_such_photo"], "no_such_photo"), (["cat", "chelsea"], "same image")],
)
def test_photos_bad_lists_are_config_errors(tmp_path, photos, match):
    with pytest.raises(ConfigError, match=match):
        D.prepare("ph", _photos(photos=photos), tmp_path, tmp_path / "o", seed=0)
    assert _leftovers(tmp_path / "o") == []


def test_caps_take_a_seeded_subset(tmp_path):
    spec = _photos(train=5, test=5, photos=["astronaut", "coffee"], max_train=3, max_test=4)
    meta = D.prepare("ph", spec, tmp_path, tmp_path / "o", seed=0)
    assert meta["counts"] == {"train": 3, "test": 4}


def test_digits_stratified_split(tmp_path):
    spec = {"source": "embedded_digits", "size": 16}
    D.download("dg", spec, tmp_path / "raw")
    meta = D.prepare("dg", spec, tmp_path / "raw", tmp_path / "o", seed=0)
    x, y = D.load_split(tmp_path / "o", "train")
    xt, yt = D.load_split(tmp_path / "o", "test")
    assert meta["classes"] == [str(d) for d in range(10)]
    assert len(x) + len(xt) == 1797 and x.shape[1:] == (16, 16, 3)
    assert np.array_equal(x[..., 0], x[..., 2]) and x.max() > 200  # gray, 0..255
    share = np.bincount(yt, minlength=10) / (np.bincount(y, minlength=10) + np.bincount(yt))
    assert np.allclose(share, 0.2, atol=0.02)
    again = D.prepare("dg", spec, tmp_path / "raw", tmp_path / "o2", seed=0)
    other = D.prepare("dg", spec, tmp_path / "raw", tmp_path / "o3", seed=1)
    assert again["sha256"] == meta["sha256"] != other["sha256"]


# --------------------------------------------------------------------------------------------
# cifar10 / gtsrb through (fake) torchvision
# --------------------------------------------------------------------------------------------


class _FakeCIFAR10:
    calls: list = []

    def __init__(self, root, train=True, download=False, **kwargs):
        type(self).calls.append((Path(root), train, download))
        self.classes = ["airplane", "car", "bird"]
        n = 6 if train else 3
        self.labels = [i % 3 for i in range(n)]
        if download:
            (Path(root) / f"batch_{int(train)}").write_text("fake")

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return Image.new("RGB", (32, 32), (i * 10, 20, 30)), self.labels[i]


class _FakeGTSRB:
    def __init__(self, root, split="train", download=False, **kwargs):
        self.labels = [0, 1, 2, 4] if split == "train" else [4, 0]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return Image.new("RGB", (30 + i, 41), (200, 10 * i, 0)), self.labels[i]


def test_cifar10_with_fake_torchvision(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.CIFAR10", _FakeCIFAR10)
    _FakeCIFAR10.calls = []
    spec = {"source": "cifar10", "size": 32}
    raw = D.download("cifar10", spec, tmp_path / "raw")
    assert (raw / "batch_1").exists() and (raw / "SOURCE.json").exists()
    assert [c[1:] for c in _FakeCIFAR10.calls] == [(True, True), (False, True)]
    meta = D.prepare("cifar10", spec, tmp_path / "raw", tmp_path / "o", seed=0)
    assert [c[1:] for c in _FakeCIFAR10.calls[2:]] == [(True, False), (False, False)]
    assert _FakeCIFAR10.calls[2][0] == raw
    assert meta["classes"] == ["airplane", "car", "bird"] and meta["counts"] == {
        "train": 6,
        "test": 3,
    }
    x, y = D.load_split(tmp_path / "o", "train")
    assert x.shape == (6, 32, 32, 3) and x[5, 0, 0].tolist() == [50, 20, 30]
    assert y.tolist() == [0, 1, 2, 0, 1, 2]


def test_gtsrb_resizes_varying_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.GTSRB", _FakeGTSRB)
    spec = {"source": "gtsrb", "size": 24}
    D.download("gtsrb", spec, tmp_path / "raw")
    meta = D.prepare("gtsrb", spec, tmp_path / "raw", tmp_path / "o", seed=0)
    x, y = D.load_split(tmp_path / "o", "train")
    assert x.shape == (4, 24, 24, 3) and x[2, 5, 5].tolist() == [200, 20, 0]
    assert meta["classes"] == ["0", "1", "2", "3", "4"]  # no .classes: 0..max label
    assert meta["class_counts"]["test"] == [1, 0, 0, 0, 1]


def test_torchvision_failure_is_a_download_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(DownloadError) as err:
        D.download("cifar10", {"source": "cifar10", "size": 32}, tmp_path / "raw")
    message = str(err.value)
    assert "'cifar10'" in message and str(tmp_path / "raw" / "cifar10") in message
    assert "by hand" in message and "cifar-10-python.tar.gz" in message
    assert _leftovers(tmp_path / "raw") == []
    with pytest.raises(DataError, match="cifar10"):
        D.prepare("cifar10", {"source": "cifar10", "size": 32}, tmp_path / "raw", tmp_path / "o", 0)


# --------------------------------------------------------------------------------------------
# url archives (served as file:// URLs)
# --------------------------------------------------------------------------------------------


def _class_zip(path: Path, classes=("alice", "bob", "carol"), per_class=5) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for c, cls in enumerate(classes):
            for i in range(per_class):
                zf.writestr(f"faces/{cls}/{i:02d}.png", _png_bytes((40 * c, 5 * i, 100)))
        zf.writestr("faces/alice/notes.txt", "not an image")
        zf.writestr("__MACOSX/faces/alice/._00.png", b"AppleDouble junk")
        zf.writestr("faces/bob/.hidden.png", b"junk")
    return path


def _url_spec(archive: Path, sha="auto", **extra) -> dict:
    sha256 = sha256_file(archive) if sha == "auto" else sha
    return {"source": "url", "size": 16, "url": archive.as_uri(), "sha256": sha256,
            "layout": "class_folders", "test_fraction": 0.4, **extra}  # fmt: skip


def test_a_rerun_removes_what_a_killed_download_left(tmp_path):
    """SIGKILL leaves the staging folder; the next download of that dataset removes it."""
    raw = tmp_path / "raw"
    for leftover in (".pubfig.partial-abc123", ".pubfig.old-def456", ".pubfig2.partial-x"):
        (raw / leftover).mkdir(parents=True)
        (raw / leftover / "faces.zip").write_bytes(b"\0" * 4096)
    D.download("pubfig", _url_spec(_class_zip(tmp_path / "faces.zip")), raw)
    assert _leftovers(raw) == [".pubfig2.partial-x", "pubfig"]  # another dataset's is not ours


def test_sigterm_during_a_download_cleans_up_like_ctrl_c(tmp_path):
    """What scancel sends: the staging folder goes, nothing of the dataset is left."""
    fifo = tmp_path / "faces.zip"
    os.mkfifo(fifo)  # reading it blocks until a writer comes: the download hangs mid-way
    raw = tmp_path / "raw"
    spec = _url_spec(fifo, sha="0" * 64)
    code = (
        f"from freqbackdoor.data import datasets as D; D.download('pubfig', {spec!r}, {str(raw)!r})"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(raw.glob(".pubfig.partial-*")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the download did not start"
        time.sleep(0.05)
    time.sleep(0.2)  # into the blocking read
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=30)[1]
    assert process.returncode != 0 and "KeyboardInterrupt" in stderr
    assert _leftovers(raw) == []


def test_url_class_folders(tmp_path):
    spec = _url_spec(_class_zip(tmp_path / "faces.zip"))
    raw = D.download("pubfig", spec, tmp_path / "raw")
    assert (raw / "faces.zip").is_file() and (raw / "extracted" / "faces" / "bob").is_dir()
    note = json.loads((raw / "SOURCE.json").read_text())
    assert note["sha256"] == spec["sha256"] and note["url"] == spec["url"]
    assert _leftovers(tmp_path / "raw") == ["pubfig"]
    meta = D.prepare("pubfig", spec, tmp_path / "raw", tmp_path / "o", seed=0)
    assert meta["classes"] == ["alice", "bob", "carol"]
    assert meta["class_counts"] == {"train": [3, 3, 3], "test": [2, 2, 2]}
    files = meta["provenance"]["files"]
    assert not set(files["train"]) & set(files["test"]) and len(files["train"]) == 9
    x, y = D.load_split(tmp_path / "o", "train")
    assert x.shape == (9, 16, 16, 3) and x[y == 2][0, 0, 0, 0] == 80  # carol's red channel


def test_url_filename_prefix_tar_test_only(tmp_path):
    archive = tmp_path / "tsrd-train.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for cls in ("000", "003"):
            for i in range(3):
                data = _png_bytes((int(cls) * 50, i, 0), size=(13, 9))
                info = tarfile.TarInfo(f"tsrd/{cls}_{i:04d}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    spec = _url_spec(archive, layout="filename_prefix", test_fraction=1.0, size=8)
    D.download("tsrd", spec, tmp_path / "raw")
    meta = D.prepare("tsrd", spec, tmp_path / "raw", tmp_path / "o", seed=0)
    assert meta["classes"] == ["000", "003"] and meta["counts"] == {"train": 0, "test": 6}
    x, y = D.load_split(tmp_path / "o", "train")
    assert x.shape == (0, 8, 8, 3) and x.dtype == np.uint8 and y.shape == (0,)
    xt, yt = D.load_split(tmp_path / "o", "test")
    assert yt.tolist() == [0, 0, 0, 1, 1, 1] and xt[3, 0, 0, 0] == 150


def test_url_min_per_class_drops_small_classes(tmp_path):
    archive = _class_zip(tmp_path / "a.zip", classes=("big", "tiny"), per_class=4)
    with zipfile.ZipFile(archive, "a") as zf:
        for i in range(4, 8):
            zf.writestr(f"faces/big/{i:02d}.png", _png_bytes((1, 2, 3)))
    spec = _url_spec(archive, min_per_class=5)
    D.download("d", spec, tmp_path / "raw")
    meta = D.prepare("d", spec, tmp_path / "raw", tmp_path / "o", seed=0)
    assert meta["classes"] == ["big"] and meta["provenance"]["dropped_classes"] == {"tiny": 4}


def test_url_bad_checksum(tmp_path):
    archive = _class_zip(tmp_path / "faces.zip")
    spec = _url_spec(archive, sha="0" * 64)
    with pytest.raises(ChecksumError) as err:
        D.download("pubfig", spec, tmp_path / "raw")
    message = str(err.value)
    assert spec["url"] in message and "0" * 64 in message and sha256_file(archive) in message
    assert str(tmp_path / "raw" / "faces.zip") in message  # where to place by hand
    assert _leftovers(tmp_path / "raw") == []


def test_url_null_checksum_is_refused_with_the_actual_sha(tmp_path):
    archive = _class_zip(tmp_path / "faces.zip")
    with pytest.raises(ChecksumError) as err:
        D.download("pubfig", _url_spec(archive, sha=None), tmp_path / "raw")
    assert sha256_file(archive) in str(err.value) and "datasets.pubfig.sha256" in str(err.value)
    assert _leftovers(tmp_path / "raw") == []


def test_url_unreachable(tmp_path):
    url = (tmp_path / "missing" / "faces.zip").as_uri()
    spec = {"source": "url", "size": 8, "url": url, "sha256": "a" * 64, "layout": "class_folders"}
    with pytest.raises(DownloadError) as err:
        D.download("pubfig", spec, tmp_path / "raw")
    assert url in str(err.value) and str(tmp_path / "raw" / "faces.zip") in str(err.value)
    assert _leftovers(tmp_path / "raw") == []


def test_url_uses_an_archive_placed_by_hand(tmp_path):
    archive = _class_zip(tmp_path / "faces.zip")
    spec = _url_spec(archive, url="http://unreachable.invalid/faces.zip")
    placed = tmp_path / "raw" / "pubfig" / "faces.zip"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(archive.read_bytes())
    # prepare() alone works from the hand-placed archive (Snakemake sees the folder as done)
    meta = D.prepare("pubfig", spec, tmp_path / "raw", tmp_path / "o", seed=0)
    assert meta["counts"] == {"train": 9, "test": 6}
    assert sorted(p.name for p in placed.parent.iterdir()) == ["faces.zip"]
    assert _leftovers(tmp_path / "raw") == ["pubfig"]
    raw = D.download("pubfig", spec, tmp_path / "raw")
    assert (raw / "extracted").is_dir() and sha256_file(raw / "faces.zip") == spec["sha256"]
    # a corrupt hand-placed archive is a checksum error and stays where the user put it
    placed.write_bytes(b"corrupt")
    with pytest.raises(ChecksumError, match=spec["sha256"]):
        D.download("pubfig", spec, tmp_path / "raw")
    assert placed.read_bytes() == b"corrupt"


def test_url_archive_beside_the_raw_folder_is_used(tmp_path):
    archive = _class_zip(tmp_path / "faces.zip")
    spec = _url_spec(archive, url="http://unreachable.invalid/faces.zip")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "faces.zip").write_bytes(archive.read_bytes())
    raw = D.download("pubfig", spec, tmp_path / "raw")
    assert "placed by hand" in json.loads((raw / "SOURCE.json").read_text())["archive_origin"]
    assert (raw / "extracted" / "faces" / "carol" / "04.png").is_file()


def test_archive_members_that_escape_are_rejected(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ok/a.png", _png_bytes((1, 1, 1)))
        zf.writestr("../escaped.png", _png_bytes((1, 1, 1)))
    with pytest.raises(DataError, match=r"\.\./escaped\.png"):
        D.download("bad", _url_spec(evil), tmp_path / "raw")
    assert not (tmp_path / "escaped.png").exists() and _leftovers(tmp_path / "raw") == []

    linky = tmp_path / "link.tar"
    with tarfile.open(linky, "w") as tf:
        info = tarfile.TarInfo("data/link.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="link"):
        D.download("bad", _url_spec(linky), tmp_path / "raw")
    assert _leftovers(tmp_path / "raw") == []


# --------------------------------------------------------------------------------------------
# imagefolder and load_image
# --------------------------------------------------------------------------------------------


def _png16_rgb(path: Path, array: np.ndarray) -> None:
    """Write a 16-bit RGB PNG by hand (PIL cannot write one)."""
    height, width, _ = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _imagefolder(root: Path) -> Path:
    def save(rel: str, image: Image.Image, **kwargs) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **kwargs)

    save("train/cat/rgb.png", Image.new("RGB", (20, 10), (255, 0, 0)))
    save("train/cat/gray.JPG", Image.new("L", (9, 31), 128), quality=100)
    save("train/cat/alpha.png", Image.new("RGBA", (8, 8), (0, 255, 0, 0)))
    palette = Image.new("P", (7, 5), 0)
    palette.putpalette([0, 0, 255] + [0] * 765)
    save("train/dog/palette.gif", palette)
    wide = Image.fromarray(np.full((6, 5), 257 * 100, dtype=np.uint16))
    save("train/dog/deep16.png", wide)
    rgb16 = np.zeros((5, 9, 3), dtype=np.uint16)
    rgb16[..., 0], rgb16[..., 1] = 65535, 257 * 10
    _png16_rgb(root / "train" / "dog" / "rgb16.png", rgb16)
    save("test/dog/x.bmp", Image.new("RGB", (3, 4), (1, 2, 3)))
    (root / "train" / "dog" / "readme.txt").write_text("ignored")
    return root


def test_imagefolder_fingerprint_changes_with_its_files(tmp_path):
    root = tmp_path / "data"
    for split, cls, i in [("train", "a", 0), ("train", "b", 0), ("test", "a", 0)]:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        (root / split / cls / f"{i}.png").write_bytes(_png_bytes((10 * i, 0, 0)))
    spec = {"source": "imagefolder", "size": 8, "root": str(root)}
    first = D.source_fingerprint("f", spec)
    assert len(first) == 64 and D.source_fingerprint("f", spec) == first
    (root / "train" / "a" / "notes.txt").write_text("not an image: ignored")
    assert D.source_fingerprint("f", spec) == first
    (root / "train" / "a" / "1.png").write_bytes(_png_bytes((1, 2, 3)))  # added
    added = D.source_fingerprint("f", spec)
    edited_file = root / "train" / "b" / "0.png"
    edited_file.write_bytes(_png_bytes((9, 9, 9), size=(11, 7)))  # edited
    edited = D.source_fingerprint("f", spec)
    (root / "train" / "a" / "1.png").unlink()  # removed
    assert len({first, added, edited, D.source_fingerprint("f", spec)}) == 4
    assert D.source_fingerprint("e", {"source": "embedded_photos"}) is None


def test_imagefolder_converts_every_mode(tmp_path):
    root = _imagefolder(tmp_path / "data")
    spec = {"source": "imagefolder", "size": 12, "root": str(root)}
    raw = D.download("mine", spec, tmp_path / "raw")
    assert json.loads((raw / "SOURCE.json").read_text())["root"] == str(root.resolve())
    meta = D.prepare("mine", spec, tmp_path / "raw", tmp_path / "o", seed=0)
    assert meta["classes"] == ["cat", "dog"] and meta["counts"] == {"train": 6, "test": 1}
    x, y = D.load_split(tmp_path / "o", "train")
    assert x.shape == (6, 12, 12, 3) and y.tolist() == [0, 0, 0, 1, 1, 1]
    pixels = dict(zip(meta["provenance"]["files"]["train"], x[:, 6, 6].tolist(), strict=True))
    assert pixels["train/cat/rgb.png"] == [255, 0, 0]
    assert pixels["train/cat/alpha.png"] == [0, 255, 0]  # alpha dropped, colour kept
    assert pixels["train/dog/palette.gif"] == [0, 0, 255]
    assert pixels["train/dog/deep16.png"] == [100, 100, 100]  # 16-bit scaled to 8 bits
    assert pixels["train/dog/rgb16.png"] == [255, 10, 0]
    assert max(abs(v - 128) for v in pixels["train/cat/gray.JPG"]) <= 1


def test_load_image_center_crop_keeps_the_middle(tmp_path):
    image = np.zeros((10, 40, 3), dtype=np.uint8)
    image[:, 10:30] = 255  # white middle half
    Image.fromarray(image).save(tmp_path / "wide.png")
    assert D.load_image(tmp_path / "wide.png", 5, "center_crop").min() == 255
    assert D.load_image(tmp_path / "wide.png", 6, "stretch")[:, 0].max() == 0


def test_imagefolder_test_class_must_be_in_train(tmp_path):
    root = _imagefolder(tmp_path / "data")
    (root / "test" / "horse").mkdir()
    Image.new("RGB", (4, 4)).save(root / "test" / "horse" / "h.png")
    spec = {"source": "imagefolder", "size": 8, "root": str(root)}
    with pytest.raises(DataError, match="'horse'"):
        D.prepare("mine", spec, tmp_path, tmp_path / "o", seed=0)


def test_corrupt_image_names_the_file_and_leaves_no_output(tmp_path):
    root = _imagefolder(tmp_path / "data")
    bad = root / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x00garbage, not a PNG" * 10)
    out = tmp_path / "o"
    out.mkdir()
    for name in OUTPUTS:  # stale outputs of an earlier run must not survive a failed one
        (out / name).write_text("stale")
    spec = {"source": "imagefolder", "size": 8, "root": str(root)}
    with pytest.raises(DataError) as err:
        D.prepare("mine", spec, tmp_path, out, seed=0)
    assert str(bad) in str(err.value) and "'mine'" in str(err.value)
    assert _leftovers(out) == []


def test_every_unreadable_image_of_a_folder_is_named_in_one_error(tmp_path):
    root = _imagefolder(tmp_path / "data")
    bad = [root / "train" / "dog" / "broken.png", root / "train" / "cat" / "empty.jpg"]
    bad.append(root / "test" / "dog" / "cut.bmp")
    for path in bad:
        path.write_bytes(b"\x00not an image")
    spec = {"source": "imagefolder", "size": 8, "root": str(root)}
    with pytest.raises(DataError) as err:
        D.prepare("mine", spec, tmp_path, tmp_path / "o", seed=0)
    message = str(err.value)
    assert "train: dataset 'mine': 2 of 8 images unreadable" in message
    assert "test: dataset 'mine': 1 of 2 images unreadable" in message
    assert all(str(p) in message for p in bad)


def test_truncated_image_is_a_data_error(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(_png_bytes((1, 2, 3), size=(64, 64))[:60])
    with pytest.raises(DataError, match="cut.png"):
        D.load_image(path, 8)


def test_imagefolder_missing_root(tmp_path):
    spec = {"source": "imagefolder", "size": 8, "root": str(tmp_path / "nowhere")}
    with pytest.raises(DataError, match="nowhere"):
        D.download("mine", spec, tmp_path / "raw")
    assert _leftovers(tmp_path / "raw") == []


# --------------------------------------------------------------------------------------------
# Config errors and load_split
# --------------------------------------------------------------------------------------------


def test_unknown_source_and_bad_keys_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="'ftp'.*datasets.odd.source"):
        D.download("odd", {"source": "ftp", "size": 8}, tmp_path)
    with pytest.raises(ConfigError, match="ftp"):
        D.prepare("odd", {"source": "ftp", "size": 8}, tmp_path, tmp_path / "o", 0)
    with pytest.raises(ConfigError, match="datasets.ph.size"):
        D.prepare("ph", {"source": "embedded_photos"}, tmp_path, tmp_path / "o", 0)
    with pytest.raises(ConfigError, match="datasets.ph.test_fraction"):
        D.prepare("ph", _photos(test_fraction=1.5), tmp_path, tmp_path / "o", 0)
    with pytest.raises(ConfigError, match="datasets.u.sha256"):
        D.download("u", {"source": "url", "size": 8, "url": "file:///x.zip", "sha256": "abc",
                         "layout": "class_folders"}, tmp_path)  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_load_split_roundtrip(tmp_path):
    spec = _photos(train=2, test=1, photos=["coffee", "rocket"])
    D.prepare("ph", spec, tmp_path, tmp_path / "o", seed=0)
    x, y = D.load_split(tmp_path / "o", "train")
    assert isinstance(x, np.memmap) and x.shape == (4, 32, 32, 3) and y.tolist() == [0, 0, 1, 1]
    x2, _ = D.load_split(tmp_path / "o", "train", mmap=False)
    assert not isinstance(x2, np.memmap) and np.array_equal(x, x2)
    with pytest.raises(ConfigError, match="valid"):
        D.load_split(tmp_path / "o", "valid")
    with pytest.raises(DataError, match="x_test.npy"):
        D.load_split(tmp_path / "nothing", "test")


def test_embedded_photos_test_only_set(tmp_path):
    """test_fraction 1 (as TSRD): no training images, test crops from the whole photographs."""
    spec = _photos(size=16, train=3, test=4, photos=["camera", "moon"], test_fraction=1.0)
    D.download("tsrd_like", spec, tmp_path)
    meta = D.prepare("tsrd_like", spec, tmp_path, tmp_path / "o", 0)
    assert meta["counts"] == {"train": 0, "test": 8}
    x_train, _ = D.load_split(tmp_path / "o", "train")
    x_test, y_test = D.load_split(tmp_path / "o", "test")
    assert x_train.shape == (0, 16, 16, 3) and x_test.shape == (8, 16, 16, 3)
    assert y_test.tolist() == [0] * 4 + [1] * 4
    region = meta["provenance"]["photos"][0]["test"]["region"]
    assert region == [0, 0, 512, 512] and "train" not in meta["provenance"]["photos"][0]
