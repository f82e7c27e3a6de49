"""The run's provenance record, README.md's generated demo claims block and
docs/authors-models.md's generated comparison of the authors' detectors."""

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from freqbackdoor.errors import DataError
from freqbackdoor.provenance import (
    BEGIN,
    END,
    VERDICTS,
    readme_block,
    replace_block,
    run_provenance,
    update_readme,
)

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = pd.DataFrame(
    {
        "claim": ["highfreq_above_one", "frequency_beats_image", "mna_smooth_harder_before"],
        "dataset": ["photos32", "digits32", "photos32"],
        "verdict": ["holds", "does not hold", "not measured"],
        "measured": ["min ratio 1.22 [1.20, 1.24] (blend)", "AUC +0.000 [0, 0]", ""],
        "reason": ["every CI above 1", "difference not significant", "no mna block | none"],
        "setting": ["", "table2: photos32 -> digits32", ""],
    }
)
PROVENANCE = {"commit": "0123456789abcdef", "uncommitted_changes": True, "finished_utc": "2026-12-04 17:00:00", "config_files": ["config/config.yaml"]}  # fmt: skip


def test_block_is_stamped_with_the_run_and_counts_each_verdict():
    block = readme_block(CLAIMS, PROVENANCE)
    lines = block.splitlines()
    assert lines[0] == BEGIN and lines[-1] == END
    assert "commit `0123456789` with uncommitted changes" in lines[1]
    assert "2026-12-04 17:00:00 UTC" in lines[1] and "`config/config.yaml`" in lines[1]
    assert "1 holds, 1 does not hold, 1 not measured, of 3 rows" in lines[1]
    rows = [line for line in lines if line.startswith("| ") and "Claim" not in line]
    assert len(rows) == 3 and "no mna block \\| none" in rows[2]  # a pipe cannot break the row
    assert rows[0].startswith("| highfreq_above_one | photos32 |")
    assert rows[1].startswith("| frequency_beats_image | table2: photos32 -> digits32 |")


def test_unknown_verdict_or_missing_column_is_refused():
    with pytest.raises(DataError, match="unknown verdict"):
        readme_block(CLAIMS.assign(verdict="maybe"), PROVENANCE)
    with pytest.raises(DataError, match="reason"):
        readme_block(CLAIMS.drop(columns="reason"), PROVENANCE)


def test_update_rewrites_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{BEGIN}\nold numbers\n{END}\nafter\n")
    (tmp_path / "claims.csv").write_text(CLAIMS.to_csv(index=False))
    (tmp_path / "provenance.json").write_text(json.dumps(PROVENANCE))
    update_readme(readme, tmp_path / "claims.csv", tmp_path / "provenance.json")
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n" + BEGIN) and text.endswith(END + "\nafter\n")
    assert "old numbers" not in text and "highfreq_above_one" in text
    with pytest.raises(DataError, match="other.md: no generated block"):
        replace_block("no markers here", "x", "other.md")
    with pytest.raises(DataError, match="missing.csv: not found"):
        update_readme(readme, tmp_path / "missing.csv", tmp_path / "provenance.json")


def test_provenance_names_the_commit_and_uncommitted_changes(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("a\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    record = run_provenance(tmp_path, ["config/config.yaml"])
    assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]) and not record["uncommitted_changes"]
    (tmp_path / "a.txt").write_text("b\n")
    assert run_provenance(tmp_path, [])["uncommitted_changes"]
    outside = run_provenance(tmp_path / "..", [])  # tmp_path's parent is no checkout
    assert outside["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", outside["commit"])


def test_readme_demo_numbers_are_a_generated_block_from_a_named_run():
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    block = text[text.index(BEGIN) : text.index(END)]
    stamp = block.splitlines()[1]
    assert re.search(r"commit `[0-9a-f]{10}`", stamp) and re.search(r"\d{4}-\d\d-\d\d", stamp)
    verdicts = [line.split(" | ")[2] for line in block.splitlines()[5:]]
    assert verdicts and set(verdicts) <= set(VERDICTS)


def test_update_fills_the_authors_block_from_the_same_run(tmp_path):
    """The comparison with the authors' detectors, in its own page, comes from the run's
    tables/ folder."""
    from freqbackdoor.provenance import AUTHORS_BEGIN, AUTHORS_END

    report, tables = tmp_path / "results" / "report", tmp_path / "results" / "tables"
    report.mkdir(parents=True)
    (report / "claims.csv").write_text(CLAIMS.to_csv(index=False))
    (report / "provenance.json").write_text(json.dumps(PROVENANCE))
    readme, page = tmp_path / "README.md", tmp_path / "authors-models.md"
    readme.write_text(f"{BEGIN}\n{END}\nmiddle\n")
    page.write_text(f"# The authors' models\n{AUTHORS_BEGIN}\nold\n{AUTHORS_END}\nend\n")
    update_readme(readme, report / "claims.csv", report / "provenance.json", page)
    assert "were not placed" in page.read_text() and "\nold\n" not in page.read_text()
    assert "highfreq_above_one" in readme.read_text() and AUTHORS_BEGIN not in readme.read_text()
    tables.mkdir()
    (tables / "authors_detectors.md").write_text("# Title\n\ntext\n\n## photos32\n\n| a |\n")
    update_readme(readme, report / "claims.csv", report / "provenance.json", page)
    text = page.read_text()
    block = text[text.index(AUTHORS_BEGIN) : text.index(AUTHORS_END)]
    assert "*photos32*" in block and "| a |" in block and "# Title" not in block
    assert PROVENANCE["commit"][:10] in block and text.endswith(f"{AUTHORS_END}\nend\n")
    assert text.startswith("# The authors' models\n")


def test_a_page_without_its_markers_is_named_and_nothing_is_written(tmp_path):
    (tmp_path / "claims.csv").write_text(CLAIMS.to_csv(index=False))
    (tmp_path / "provenance.json").write_text(json.dumps(PROVENANCE))
    readme, page = tmp_path / "README.md", tmp_path / "authors-models.md"
    readme.write_text(f"{BEGIN}\nold numbers\n{END}\n")
    page.write_text("# The authors' models, markers lost\n")
    with pytest.raises(DataError, match="authors-models.md: no generated block"):
        update_readme(readme, tmp_path / "claims.csv", tmp_path / "provenance.json", page)
    assert "old numbers" in readme.read_text()  # the README is not half-updated either
    readme.write_text("# no claims markers\n")
    with pytest.raises(DataError, match="README.md: no generated block"):
        update_readme(readme, tmp_path / "claims.csv", tmp_path / "provenance.json", page)


def test_the_authors_block_lives_in_its_docs_page():
    from freqbackdoor.provenance import AUTHORS_BEGIN, AUTHORS_END

    page = (ROOT / "docs" / "authors-models.md").read_text()
    assert page.count(AUTHORS_BEGIN) == 1 and page.count(AUTHORS_END) == 1
    assert re.search(r"commit `[0-9a-f]{10}`", page[page.index(AUTHORS_BEGIN) :])
    assert AUTHORS_BEGIN not in (ROOT / "README.md").read_text()


def test_readme_claims_command_rewrites_both_files(tmp_path, capsys):
    from freqbackdoor.__main__ import main
    from freqbackdoor.provenance import AUTHORS_BEGIN, AUTHORS_END

    report = tmp_path / "results" / "report"
    report.mkdir(parents=True)
    (report / "claims.csv").write_text(CLAIMS.to_csv(index=False))
    (report / "provenance.json").write_text(json.dumps(PROVENANCE))
    readme, page = tmp_path / "README.md", tmp_path / "authors.md"
    readme.write_text(f"{BEGIN}\n{END}\n")
    page.write_text(f"{AUTHORS_BEGIN}\n{AUTHORS_END}\n")
    args = ["readme-claims", "--results", str(tmp_path / "results"), "--readme", str(readme)]
    assert main([*args, "--authors-page", str(page)]) == 0
    assert "highfreq_above_one" in readme.read_text() and "were not placed" in page.read_text()
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="authors.md: no generated block"):
        main([*args, "--authors-page", str(page)])
