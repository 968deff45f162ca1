"""The report in a real browser: headless Chromium renders the page and takes a screenshot; the
test reads the pixels (the page is not blank, the verdict colours and the warning banner are
drawn) and the DOM Chromium built. `make test` installs Debian's chromium when it is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from date_spark.evaluation import EvaluationResult
from date_spark.evaluation.report import render_report

from .test_eval_report import EXTRAS, UTILITY, confirmation_failed

CHROMIUM = next(
    (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (make test installs it: apt-get install chromium)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
]
GOOD = (0x1B, 0x7F, 0x3B)  # verdict colours, as in templates/report.css
POOR = (0xB0, 0x00, 0x20)
STOP_BANNER = (0xFF, 0xEB, 0xE9)


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh user data dir
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def screenshot(page: Path, tmp: Path, height: int = 1400) -> Image.Image:
    png = tmp / f"{page.parent.name}.png"
    res = chromium(page, tmp, f"--screenshot={png}", f"--window-size=1280,{height}")
    assert png.exists(), res.stderr[-2000:]
    return Image.open(png).convert("RGB")


def share_of(img: Image.Image, rgb: tuple[int, int, int], tol: int = 6) -> float:
    px = img.getdata()
    hit = sum(1 for p in px if all(abs(a - b) <= tol for a, b in zip(p, rgb, strict=True)))
    return hit / (img.width * img.height)


def test_report_renders_in_chromium(fresh_result: EvaluationResult, tmp_path: Path) -> None:
    paths = render_report(fresh_result, tmp_path / "kept", utility=UTILITY, **EXTRAS)
    img = screenshot(paths.html, tmp_path)
    assert img.size == (1280, 1400)
    white = share_of(img, (255, 255, 255), tol=2)
    assert 0.3 < white < 0.97, white  # neither blank nor a wall of colour
    assert share_of(img, GOOD) > 0.0005  # good verdicts drawn in the headline cards
    dom = chromium(paths.html, tmp_path, "--dump-dom").stdout
    assert dom.count("data-headline=") >= 5 and "At a glance" in dom
    # distributions, pair heatmap, errors, coverage, arm gains, selection trace
    assert dom.count("<img") == len(fresh_result.distributions) + 5


def test_nothing_kept_report_renders_in_chromium(tmp_path: Path, capsys: Any) -> None:
    why = "2 candidate arms tested; none lowered validation error significantly (z > 1.645)"
    paths = render_report(
        None,
        tmp_path / "none",
        nothing_kept=why,
        errors={"no partition": 0.22, "partition only": 0.21, "DATE": 0.22},
        utility=UTILITY,
        task="classification",
        power=confirmation_failed(),
    )
    img = screenshot(paths.html, tmp_path, height=900)
    assert share_of(img, STOP_BANNER) > 0.01  # the banner saying why is on screen
    assert share_of(img, POOR) > 0.0002  # "0 kept" card marked poor
    dom = chromium(paths.html, tmp_path, "--dump-dom").stdout
    assert "No synthetic row was kept." in dom and "none lowered validation error" in dom
    assert "Minimum detectable effect" in dom and "all confirmation rows" in dom
