"""The study's trajectory chart: points where the numbers put them, a band per interval, only
defined numbers drawn, every text escaped, no style attribute, and the numbers in words."""

import re

from kb.study_charts import LEFT, PLOT_HEIGHT, PLOT_WIDTH, TOP, trajectory_chart

BASE = {"round": 0, "parameters": 1000, "mean": 0.80, "ci_low": 0.78, "ci_high": 0.82,
        "kept": None}  # fmt: skip
TRAJECTORY = {
    "guided": [BASE, {"round": 1, "parameters": 1100, "mean": 0.86, "ci_low": 0.84,
                      "ci_high": 0.88, "kept": True}],
    "random": [BASE, {"round": 1, "parameters": 1098, "mean": 0.79, "ci_low": 0.75,
                      "ci_high": 0.83, "kept": False}],
}  # fmt: skip


def _chart(trajectory=TRAJECTORY, metric="test_accuracy") -> str:
    return str(trajectory_chart(trajectory, metric=metric, chart_id="study-7"))


def _points(chart: str, track: str) -> list[tuple[float, float]]:
    group = re.search(rf'<g class="track track-{track}">(.*?)</g><g class="(?:track|legend)',
                      chart).group(1)  # fmt: skip
    line = re.search(r'<polyline points="([^"]*)"', group).group(1)
    return [tuple(map(float, pair.split(","))) for pair in line.split()]


def test_points_sit_where_their_parameters_and_means_put_them():
    chart = _chart()
    guided, random = _points(chart, "guided"), _points(chart, "random")
    assert guided[0] == random[0]  # both start at the base model
    (x0, y0), (x1, y1) = guided
    _, (xr, yr) = random
    inside = [LEFT < x < LEFT + PLOT_WIDTH for x in (x0, x1, xr)]
    inside += [TOP < y < TOP + PLOT_HEIGHT for y in (y0, y1, yr)]
    assert all(inside)
    assert x0 < xr < x1  # 1000 < 1098 < 1100 parameters
    assert y1 < y0 < yr  # SVG y grows downwards: 0.86 above 0.80 above 0.79
    # x is linear in parameters: 98 of the 100 added parameters put random 98% of the way.
    assert abs((xr - x0) / (x1 - x0) - 0.98) < 0.01


def test_each_interval_is_a_band_around_its_line():
    chart = _chart()
    band = re.search(r'track-guided">.*?<polygon points="([^"]*)" class="band"/>', chart)
    corners = [tuple(map(float, pair.split(","))) for pair in band.group(1).split()]
    assert len(corners) == 4  # upper edge over two points, then the lower edge back
    (x0, y0), (x1, y1) = _points(chart, "guided")
    upper0, upper1, lower1, lower0 = corners
    assert (upper0[0], upper1[0], lower1[0], lower0[0]) == (x0, x1, x1, x0)
    assert upper0[1] < y0 < lower0[1] and upper1[1] < y1 < lower1[1]


def test_rounds_are_labelled_and_candidates_not_kept_are_hollow():
    chart = _chart()
    assert chart.count('class="round-label">r0</text>') == 2
    assert chart.count('class="round-label">r1</text>') == 2
    assert chart.count('<g class="point not-kept">') == 1
    assert "Random, round 1: 1,098 parameters, mean 0.79 (95% CI 0.75 to 0.83), not kept" in chart


def test_the_chart_is_accessible_and_has_no_inline_style():
    chart = _chart()
    assert chart.startswith('<svg class="chart study-chart" viewBox="0 0 ')
    assert 'role="img" aria-labelledby="study-7-title study-7-desc"' in chart
    assert '<title id="study-7-title">test_accuracy against parameters, per track' in chart
    description = re.search(r'<desc id="study-7-desc">(.*?)</desc>', chart).group(1)
    assert description == (
        "test_accuracy mean against parameter count. Guided: round 0: 1,000 parameters, mean "
        "0.8 (95% CI 0.78 to 0.82); round 1: 1,100 parameters, mean 0.86 (95% CI 0.84 to 0.88), "
        "kept. Random: round 0: 1,000 parameters, mean 0.8 (95% CI 0.78 to 0.82); round 1: "
        "1,098 parameters, mean 0.79 (95% CI 0.75 to 0.83), not kept."
    )
    assert "style=" not in chart and "<script" not in chart
    assert chart.count('<g class="legend track-') == 2


def test_undefined_numbers_are_left_out_and_said_so():
    trajectory = {
        "guided": [BASE, {"round": 1, "parameters": 1100, "mean": 0.9, "ci_low": None,
                          "ci_high": None, "kept": False}],
        "uniform": [BASE, {"round": 1, "parameters": 1100, "mean": None, "ci_low": None,
                           "ci_high": None, "kept": None}],
    }  # fmt: skip
    chart = _chart(trajectory)
    assert len(_points(chart, "guided")) == 2 and len(_points(chart, "uniform")) == 1
    # The guided band stops at the base model: one interval left, drawn as a whisker.
    guided = re.search(r'track-guided">(.*?)<polyline', chart).group(1)
    assert "<polygon" not in guided and guided.count('class="band-whisker"') == 1
    assert "round 1: 1,100 parameters, mean 0.9 (interval undefined), not kept" in chart
    assert "round 1: 1,100 parameters, mean undefined (interval undefined)." in chart
    assert "nan" not in chart.lower() and "None" not in chart


def test_one_point_or_none_at_all():
    single = _chart({"guided": [BASE]})
    assert single.count("<circle") == 1 and "<polygon" not in single
    assert _chart({"guided": [], "random": []}) == ""
    assert _chart({"guided": [{**BASE, "mean": None}]}) == ""


def test_every_text_is_escaped():
    hostile = '<script>alert("x")</script>'
    chart = _chart({hostile: [BASE]}, metric=hostile)
    assert hostile not in chart
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in chart
