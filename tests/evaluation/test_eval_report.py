"""The report: every plot is in the page, the page stands alone, and it lands in MLflow."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import mlflow
import pytest

from date_spark.evaluation import EvaluationResult
from date_spark.report import HTML_NAME, JSON_NAME, MARKDOWN_NAME, log_report, render_report

PNG = b"\x89PNG\r\n\x1a\n"
EXTRAS: dict[str, Any] = {
    "coverage": {"age < 30 and homeowner = false": 0.21, "region = 'south' and age >= 30": 0.18},
    "arm_gains": {"r0/path-1": 0.012, "r1/path-0": -0.004, "r2/path-3": 0.007},
    "selection_trace": [
        {"arm": "r0/path-1", "score": 0.71, "accepted": True},
        {"arm": "r2/path-3", "score": 0.73, "accepted": True},
        {"arm": "r1/path-0", "score": 0.72, "accepted": False},
    ],
    "errors": {"no partition": 0.2899, "partition only": 0.2298, "DATE": 0.2086},
}


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str]] = []
        self.external: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.imgs.append(a)
        if tag == "h2":
            self._in_h2 = True
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.h2.append(data.strip())


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def plots(page: Page, kind: str) -> list[dict[str, str]]:
    return [i for i in page.imgs if i.get("data-plot") == kind]


def test_every_plot_is_in_the_page(fresh_result: EvaluationResult, tmp_path: Path) -> None:
    paths = render_report(fresh_result, tmp_path / "report", **EXTRAS)
    assert paths.html.name == HTML_NAME and paths.html.is_file()
    page = parse(paths.html)
    dist = plots(page, "distribution")
    assert sorted(i["data-column"] for i in dist) == sorted(fresh_result.columns)
    assert len(dist) == len(fresh_result.distributions) == 8
    for kind in ("pair-trends", "coverage", "arm-gains", "selection-trace", "errors"):
        assert len(plots(page, kind)) == 1, kind
    for img in page.imgs:  # every image embedded, and a real PNG
        head, _, b64 = img["src"].partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(b64)[:8] == PNG
    assert page.external == []
    for section in ("Fidelity", "Privacy", "Validity", "DGR coverage", "Arm gains"):
        assert section in page.h2


def test_optional_sections_render_only_when_given(
    fresh_result: EvaluationResult, tmp_path: Path
) -> None:
    page = parse(render_report(fresh_result, tmp_path).html)
    assert {i["data-plot"] for i in page.imgs} == {"distribution", "pair-trends"}
    assert not {"DGR coverage", "Arm gains", "Selection trace"} & set(page.h2)


def test_markdown_and_json_beside_the_page(fresh_result: EvaluationResult, tmp_path: Path) -> None:
    paths = render_report(fresh_result, tmp_path, errors=EXTRAS["errors"])
    md = paths.markdown.read_text(encoding="utf-8")
    assert md.startswith("# Evaluation summary")
    assert f"overall {fresh_result.fidelity.overall:.4f}" in md
    assert "privacy: ok" in md and "DATE 0.2086" in md
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data["fidelity"]["overall"] == pytest.approx(fresh_result.fidelity.overall)
    assert data["privacy"]["too_close"] is False


def test_report_is_an_mlflow_artifact(
    identical_result: EvaluationResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    paths = render_report(identical_result, tmp_path / "out")
    assert log_report(paths, result=identical_result) is False  # no active run: nothing logged
    exp = mlflow.create_experiment("eval-report", artifact_location=str(tmp_path / "artifacts"))
    with mlflow.start_run(experiment_id=exp) as run:
        assert log_report(paths, result=identical_result) is True
    client = mlflow.MlflowClient(tracking_uri=uri)
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert names == {HTML_NAME, MARKDOWN_NAME, JSON_NAME}
    local = client.download_artifacts(run.info.run_id, f"evaluation/{HTML_NAME}", str(tmp_path))
    assert len(plots(parse(Path(local)), "distribution")) == 8
    metrics = client.get_run(run.info.run_id).data.metrics
    assert metrics["fidelity.overall"] == pytest.approx(1.0)
    assert metrics["privacy.too_close"] == 1.0
    assert metrics["privacy.exact_copy_rate"] == 1.0
