"""The docs site builds in strict mode (mkdocs.yml): every internal link and
anchor resolves and every page is in the nav; and that check does fail on a
broken link."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=root,
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    r = build(ROOT, tmp_path / "site")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site/ci/index.html").is_file()


def test_a_broken_link_or_anchor_fails_the_build(tmp_path: Path) -> None:
    for broken, named in (("[gone](nowhere.md)", "nowhere.md"), ("[gone](cli.md#no-such-heading)", "no-such-heading")):
        copy = tmp_path / named
        copy.mkdir()
        shutil.copy(ROOT / "mkdocs.yml", copy)
        shutil.copytree(ROOT / "docs", copy / "docs")
        with (copy / "docs/index.md").open("a") as f:
            f.write(f"\n{broken}\n")
        r = build(copy, copy / "site")
        assert r.returncode != 0 and named in r.stderr, r.stderr
