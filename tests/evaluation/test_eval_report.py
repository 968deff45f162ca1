"""The report: every plot is in the page, the page stands alone, and it lands in MLflow."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import mlflow
import pytest

from date_spark.evaluation import EvaluationResult
from date_spark.evaluation.report import (
    HTML_NAME,
    JSON_NAME,
    MARKDOWN_NAME,
    log_report,
    render_report,
)

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


# ----------------------------------------------------------------------------------------------
# The page a person reads: headline numbers with a scale, warnings, integers, one step column
# ----------------------------------------------------------------------------------------------

TRACE_WITH_STEPS = [
    {"step": 0, "arm_id": "r0/p1", "utility": 0.76, "accepted": True, "score_after": 0.78,
     "gain": 0.01, "z": 2.1, "rows": 12.0},
    {"step": 1, "arm_id": "r1/p0", "utility": 0.42, "accepted": False, "score_after": 0.78,
     "gain": float("nan"), "z": float("nan"), "rows": 8.0},
]  # fmt: skip
UTILITY = {
    "test_rows": 80.0,
    "train_rows": 320.0,
    "synthetic_rows": 12.0,
    "decision_tree.no_partition": 0.225,
    "decision_tree.partition_only": 0.2125,
    "decision_tree.date": 0.2,
    "decision_tree.relative_reduction": 0.111,
}


class Cards(HTMLParser):
    """Headline cards (label -> verdict class) and the header cells of every table."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, str] = {}
        self.headers: list[list[str]] = []
        self.ids: list[str] = []
        self._th = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "div" and "data-headline" in a:
            self.cards[a["data-headline"]] = a["class"].split()[1]
        if tag == "thead":
            self.headers.append([])
        self._th = tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._th = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._th and self.headers:
            self.headers[-1].append(data.strip())


def cards(path: Path) -> Cards:
    c = Cards()
    c.feed(path.read_text(encoding="utf-8"))
    return c


def test_headlines_carry_a_scale_and_a_verdict(
    fresh_result: EvaluationResult, identical_result: EvaluationResult, tmp_path: Path
) -> None:
    page = cards(render_report(fresh_result, tmp_path / "fresh", errors=EXTRAS["errors"]).html)
    assert {"fidelity (overall)", "exact copies of a training row", "privacy"} <= set(page.cards)
    assert (
        page.cards["privacy"] == "good" and page.cards["exact copies of a training row"] == "good"
    )
    assert page.cards["test error rate (DATE)"] == "good"  # 0.2086 < 0.2899
    assert page.cards["fidelity (overall)"] in {"good", "fair", "poor"}
    text = "".join(page.text)
    assert "0 unlike the real data" in text and "1 same distributions" in text
    assert "too-few-rows" not in page.ids  # 400 synthetic rows: enough
    # a table that copies its training rows is flagged on the page, not only in a table
    bad = cards(render_report(identical_result, tmp_path / "copies").html)
    assert bad.cards["privacy"] == "poor" and bad.cards["exact copies of a training row"] == "poor"


def test_privacy_rule_in_words(fresh_result: EvaluationResult, tmp_path: Path) -> None:
    text = "".join(cards(render_report(fresh_result, tmp_path).html).text)
    assert "flagged as too close to the training data when either test fires" in text
    assert "three standard errors" in text


def test_too_few_synthetic_rows_warns(
    credit_frames: dict[str, Any], credit_schema: Any, tmp_path: Path
) -> None:
    from date_spark.evaluation import evaluate

    few = credit_frames["fresh"].limit(6)
    result = evaluate(credit_frames["train"], few, credit_schema, holdout=credit_frames["holdout"])
    paths = render_report(result, tmp_path)
    page = cards(paths.html)
    assert "too-few-rows" in page.ids
    assert page.cards["fidelity (overall)"] == "n/a"  # no verdict on noise
    text = "".join(page.text)
    assert "With 6 synthetic rows against 600 real ones" in text
    assert "warning" in paths.markdown.read_text(encoding="utf-8")


def test_counts_are_integers_and_the_trace_has_one_step_column(
    fresh_result: EvaluationResult, tmp_path: Path
) -> None:
    paths = render_report(
        fresh_result,
        tmp_path,
        coverage={"age < 30": 120, "region = 'south'": 200},
        selection_trace=TRACE_WITH_STEPS,
        utility=UTILITY,
    )
    page = cards(paths.html)
    trace_head = next(h for h in page.headers if "arm_id" in h)
    assert trace_head.count("step") == 1 and trace_head[0] == "step"
    coverage_head = next(h for h in page.headers if h and h[0] == "rule" and len(h) == 2)
    assert coverage_head == ["rule", "training rows"]
    html_text = paths.html.read_text(encoding="utf-8")
    assert "<td class='num'>120</td>" in html_text and "120.0000" not in html_text
    assert "<td class='num'>12</td>" in html_text and "12.0000" not in html_text  # trace rows
    assert "test rows: 80, train rows: 320" in html_text
    assert "real non-null" in html_text and "600.0" not in html_text
    assert "80.0000" not in paths.markdown.read_text(encoding="utf-8")


def test_report_when_nothing_was_kept_says_why(tmp_path: Path) -> None:
    why = "3 candidate arms tested; none lowered validation error significantly (z > 1.645)"
    paths = render_report(
        None,
        tmp_path,
        nothing_kept=why,
        errors={"no partition": 0.22, "partition only": 0.21, "DATE": 0.21},
        utility=UTILITY,
        coverage={"age < 30": 120},
        selection_trace=TRACE_WITH_STEPS,
        task="classification",
    )
    page = cards(paths.html)
    assert "nothing-kept" in page.ids
    text = "".join(page.text)
    assert "No synthetic row was kept." in text and why[1:] in text
    assert page.cards["synthetic rows kept"] == "poor"
    assert {"Error before and after", "Utility", "DGR coverage", "Selection trace"} <= set(
        parse(paths.html).h2
    )
    assert "Fidelity" not in parse(paths.html).h2
    assert why in paths.markdown.read_text(encoding="utf-8")
    assert json.loads(paths.json.read_text(encoding="utf-8"))["nothing_kept"] == why


def test_extra_sections_extend_the_page(fresh_result: EvaluationResult, tmp_path: Path) -> None:
    from date_spark.evaluation.report import Section

    extra = Section("mde", "Minimum detectable effect", "<p>per partition</p>")
    page = parse(render_report(fresh_result, tmp_path, extra_sections=[extra]).html)
    assert page.h2[-1] == "Minimum detectable effect"


def confirmation_failed() -> dict[str, Any]:
    """A failed confirmation as the selection writes it (`Confirmation.to_dict()`)."""
    from date_spark.selection import Confirmation, PartitionPower

    parts = (
        PartitionPower("rule 0: age < 30", 40, 0.25, 0.05, 0.20),
        PartitionPower("rule 1: region = 'south'", 120, 0.20, 0.02, 0.10, 100, 0.031),
        PartitionPower("rest", 3, 0.0, float("nan"), float("nan")),
    )
    c = Confirmation(True, False, 163, 0.21, 0.212, -0.4, 1.645, 0.015, 0.0714, parts)
    return {**c.to_dict(), "power": 0.8}


def test_nothing_kept_shows_the_minimum_detectable_effect_per_partition(tmp_path: Path) -> None:
    power = confirmation_failed()
    paths = render_report(
        None,
        tmp_path,
        nothing_kept="the searched set (2 arms) failed confirmation: z=-0.40 <= 1.645 on 163 rows",
        errors={"no partition": 0.22, "partition only": 0.21, "DATE": 0.21},
        utility=UTILITY,
        task="classification",
        power=power,
    )
    page = cards(paths.html)
    assert "Minimum detectable effect" in parse(paths.html).h2
    assert "power" in page.ids
    header = ["partition", "confirmation rows", "loss", "detectable reduction", "as share of loss"]
    header.append("what its last real rows bought")  # the ceiling, where the partition has one
    assert header in page.headers
    html_text = paths.html.read_text(encoding="utf-8")
    body = html_text.split("<section id='power'>")[1].split("</section>")[0]
    # most rows first, the whole set last; a partition the placebo could not move says n/a
    order = [body.index(k) for k in ("region = &#x27;south&#x27;", "age &lt; 30", ">rest<")]
    assert order == sorted(order) and body.index("all confirmation rows") > order[-1]
    assert "<td class='num'>120</td>" in body and "<td class='num'>10.0%</td>" in body
    assert "3.1% (100 rows)" in body  # region's last 100 real rows lowered its loss by 3.1%
    assert "<td class='num'>n/a</td>" in body and "with 80% power" in body
    assert "failed" in body and "+1.0%" in body  # 0.21 -> 0.212 on the confirmation rows
    assert page.cards["smallest gain the confirmation could see"] == "n/a"
    assert "7.1%" in "".join(page.text) and "href='#power'" in html_text
    md = paths.markdown.read_text(encoding="utf-8")
    assert "smallest detectable loss reduction: 7.1% over all 163 confirmation rows" in md
    assert "`rule 1: region = 'south'` (120 rows): 10.0%; its last real rows bought 3.1%" in md
    saved = json.loads(paths.json.read_text(encoding="utf-8"))["confirmation"]
    assert saved["partitions"][0]["rows"] == 40 and saved["passed"] is False


def test_the_power_table_also_shows_when_rows_were_kept(
    fresh_result: EvaluationResult, tmp_path: Path
) -> None:
    from date_spark.selection import PartitionTest

    tests = [
        PartitionTest("rule 1: region = 'south'", ("a1",), 120, 0.20, 0.18, 2.9, 2.24, True),
        PartitionTest("rule 0: age < 30", ("a0",), 40, 0.25, 0.26, -0.3, 1.96, False),
    ]
    power = {
        **confirmation_failed(),
        "passed": True,
        "loss": 0.19,
        "z": 2.3,
        "tests": [asdict(t) for t in tests],
    }
    paths = render_report(fresh_result, tmp_path, power=power)
    page = cards(paths.html)
    assert "power" in page.ids
    assert "smallest gain the confirmation could see" not in page.cards  # only when none kept
    assert any("test of its arms" in h for h in page.headers)
    body = paths.html.read_text(encoding="utf-8")
    assert "loss -10.0%, z 2.90 vs 2.24: kept" in body
    assert "loss +4.0%, z -0.30 vs 1.96: dropped" in body and "no arm to test" in body


def test_named_segments_get_one_row_each_with_integer_rows(tmp_path: Path) -> None:
    util = {
        **UTILITY,
        "segment.age 40+.v2.relative": 0.05,  # a segment name may hold dots
        "segment.age 40+.v2.low": -0.01,
        "segment.age 40+.v2.high": 0.03,
        "segment.age 40+.v2.rows": 37.0,
    }
    paths = render_report(None, tmp_path, nothing_kept="no rule", utility=util)
    page = cards(paths.html)
    assert ["relative", "low", "high", "rows"] in page.headers  # the first header is empty
    body = paths.html.read_text(encoding="utf-8")
    assert "<td>segment.age 40+.v2</td>" in body and "<td class='num'>37</td>" in body
