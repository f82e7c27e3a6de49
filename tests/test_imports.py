"""The library's layout rule: no module imports another module's private (underscore) names.

What two modules share gets a public name in one of them; scripts import only public names.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def private_imports(path: Path) -> list[str]:
    """``module:name`` for every ``from x import _name`` in ``path`` (``__future__`` aside)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{node.module or '.'}:{alias.name}")
    return found


def test_no_module_imports_another_modules_private_names():
    files = sorted((ROOT / "freqbackdoor").rglob("*.py")) + sorted(
        (ROOT / "workflow" / "scripts").glob("*.py")
    )
    offenders = {str(p.relative_to(ROOT)): private_imports(p) for p in files}
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, offenders


def test_the_check_catches_a_private_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from .training import _precision, seeded\nfrom __future__ import annotations\n"
    )
    assert private_imports(module) == ["training:_precision"]


#: The longest a library module may grow before it is split by subject.
MAX_MODULE_LINES = 600


def test_no_library_module_is_longer_than_the_limit():
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / "freqbackdoor").rglob("*.py")
    }
    too_long = {path: n for path, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"split these modules by subject: {too_long}"
