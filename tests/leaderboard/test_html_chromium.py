"""The static HTML leaderboard in headless Chromium: it renders (screenshot), its JavaScript builds the
tables (DOM assertions on --dump-dom), and URL-hash filters hide rows and budget columns.

Skips with a clear reason when no Chromium/Chrome is installed (`.ci/run` installs Debian's `chromium`
so CI always runs it)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from lb_records import grid

from medseg_bench.leaderboard import build_leaderboard

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
                if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless browser found (install Debian's "
                                                        "'chromium'; .ci/run does this in CI)")


def _chromium(tmp_path: Path, *args: str, url: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("lb")
    build_leaderboard(grid(datasets=("ct_hip_small", "nuclei_he_small"), preset="demo"), out)
    return out / "index.html"


def test_page_renders_tables_without_errors(page, tmp_path):
    res = _chromium(tmp_path, "--dump-dom", url=page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "Uncaught" not in res.stderr, [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln]
    assert 'data-ready="1"' in dom  # the script ran to the end
    for table_id in ("table-ct_hip_small__demo-dice", "table-ct_hip_small__demo-hd95",
                     "table-nuclei_he_small__demo-aji", "table-overall-demo"):
        assert f'id="{table_id}"' in dom
    dice = dom.split('id="table-ct_hip_small__demo-dice"')[1].split("</table>")[0]
    methods = re.findall(r'data-method="([^"]+)"', dice)
    assert sorted(methods) == sorted(["otsu", "cuts", "cuts_oracle", "supervised", "mean_teacher", "supervised_full"])
    assert 'id="demo-banner"' in dom and 'src="data:image/png;base64,' in dom  # plots inlined: works offline
    assert "▲" in dice and "ref" in dice
    cost = dom.split('id="table-ct_hip_small__demo-cost"')[1].split("</table>")[0]
    assert sorted(re.findall(r'data-method="([^"]+)"', cost)) == sorted(methods)
    assert "train time (s)" in cost and "1,234" in cost  # parameters of the test records, with separators
    assert 'id="incomplete-banner"' not in dom  # every expected run of the test grid finished


def test_incomplete_grid_says_so(tmp_path):
    from medseg_bench.bench.grid import Cell
    from medseg_bench.bench.results import update_manifest

    records = grid(datasets=("ct_hip_small",), preset="demo")
    results = tmp_path / "results"
    results.mkdir()
    cells = [Cell.from_dict(r["cell"]) for r in records]
    extra = Cell("ct_hip_small", "demo", cells[0].configuration, "supervised", 2, 7)  # a seed never run
    update_manifest(tmp_path, cells + [extra], methods={})
    build_leaderboard(records, tmp_path / "lb", manifest_dir=results)
    res = _chromium(tmp_path, "--dump-dom", url=(tmp_path / "lb" / "index.html").as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    banner = res.stdout.split('id="incomplete-banner"')[1].split("</div>")[0]
    assert f"Incomplete grid: {len(records)} of {len(records) + 1} runs finished (0 failed, 1 not run yet)" in banner


def test_hash_filters_hide_rows_and_budgets(page, tmp_path):
    res = _chromium(tmp_path, "--dump-dom", url=page.as_uri() + "#family=classical,supervised&budget=0,all")
    dom = res.stdout
    rows = re.findall(r'<tr data-family="([a-z-]+)"[^>]*?( hidden="")?>', dom)
    assert rows and all((fam in ("classical", "supervised")) == (hidden == "") for fam, hidden in rows)
    cells = re.findall(r'<t[dh] data-(?:col="\d+" data-)?budget="([^"]+)"[^>]*?( hidden="")?>', dom)
    assert cells and all((b in ("0", "all")) == (hidden == "") for b, hidden in cells)


def test_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1400", url=page.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1200
    assert float(np.std(img[..., :3])) > 0.05  # header, tables, plot: not an empty page
