"""The ``imagefolder`` source: the user's own ``root/train/<class>/*`` and ``root/test/<class>/*``.

The images are read from ``root`` at prepare time (the download step only checks that the
folder exists), so :func:`source_fingerprint` gives the workflow a content id of those files
to rebuild the dataset when they change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import DataError
from .images import IMAGE_EXTENSIONS, RESIZE_MODES, image_files, load_file_lists
from .spec import SPLITS, BuildContext, BuiltDataset, spec_choice, spec_string


def source_fingerprint(name: str, spec: dict) -> str | None:
    """A content id of the files a dataset is read from outside ``raw_dir``, or None.

    An ``imagefolder`` is read at prepare time from ``root``, which Snakemake does not track:
    this hashes every image file's relative path, size and modification time (a stat, no
    reads), so the workflow passes it as a parameter and rebuilds the dataset when files are
    added, removed or edited. Other sources are pinned by the config itself (a ``url``
    archive by its sha256) and give None; so does a missing root (the job names it).
    """
    if spec.get("source") != "imagefolder" or not spec.get("root"):
        return None
    root = Path(str(spec["root"])).expanduser()
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in image_files(root, recursive=True):
        stat = path.stat()
        digest.update(
            f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()


def _imagefolder_root(name: str, spec: dict) -> Path:
    root = Path(spec_string(name, spec, "root")).expanduser()
    if not root.is_dir():
        raise DataError(
            f"dataset {name!r}: datasets.{name}.root {root} is not a folder; it must hold "
            "train/<class>/ and test/<class>/ image folders"
        )
    return root


def fetch_imagefolder(name: str, spec: dict, staging: Path, target: Path) -> dict:
    root = _imagefolder_root(name, spec)
    if not (root / "train").is_dir():
        raise DataError(f"dataset {name!r}: {root / 'train'} is missing (train/<class>/ images)")
    return {"root": str(root.resolve()), "note": "images are read from root at prepare time"}


def build_imagefolder(ctx: BuildContext, raw: Path) -> BuiltDataset:
    """``root/train/<class>/*`` and ``root/test/<class>/*``; classes from the train folders."""
    name, spec = ctx.name, ctx.spec
    root = _imagefolder_root(name, spec)
    resize = spec_choice(name, spec, "resize", "stretch", RESIZE_MODES)
    class_dirs: dict[str, dict[str, Path]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"dataset {name!r}: {folder} is missing ({split}/<class>/ images)")
        class_dirs[split] = {
            d.name: d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
        }
    classes = sorted(class_dirs["train"])
    if not classes:
        raise DataError(f"dataset {name!r}: {root / 'train'} has no class folders")
    for cls, folder in class_dirs["test"].items():
        if cls not in class_dirs["train"]:
            raise DataError(
                f"dataset {name!r}: test class {cls!r} ({folder}) has no folder in "
                f"{root / 'train'}; test classes must be a subset of the train classes"
            )
    lists: dict[str, list[tuple[Path, int]]] = {}
    for split in SPLITS:
        items = []
        for label, cls in enumerate(classes):
            if cls not in class_dirs[split]:
                continue
            paths = image_files(class_dirs[split][cls], recursive=True)
            if split == "train" and not paths:
                raise DataError(
                    f"dataset {name!r}: class folder {class_dirs[split][cls]} has no images "
                    f"({', '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            items += [(p, label) for p in paths]
        lists[split] = items
    built = load_file_lists(ctx, lists, root, resize)
    built.classes = classes
    built.provenance["root"] = str(root.resolve())
    return built
