"""Vega-Lite specs for the dashboard's charts, built from report rows (data inlined).

The browser renders them with the vendored vega / vega-lite / vega-embed bundle under
/static/vendor (see static/vendor/update.sh); nothing is fetched from elsewhere.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

GRADE_COLOURS = ["#0f766e", "#14b8a6", "#5eead4", "#a3e635", "#facc15", "#fb923c", "#f87171",
                 "#cbd5e1", "#94a3b8", "#64748b"]
CATEGORY_COLOURS = ["#2563eb", "#0d9488", "#d97706", "#7c3aed", "#db2777", "#84cc16", "#dc2626",
                    "#0891b2", "#a16207", "#9333ea", "#475569", "#f472b6"]
SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier; never fetched

CONFIG = {
    "font": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
    "view": {"stroke": None},
    "axis": {"labelColor": "#475569", "titleColor": "#334155", "gridColor": "#e2e8f0",
             "domainColor": "#cbd5e1", "tickColor": "#cbd5e1", "labelFontSize": 11,
             "titleFontSize": 11, "titleFontWeight": 600},
    "legend": {"labelColor": "#334155", "titleColor": "#334155", "labelFontSize": 11,
               "titleFontSize": 11, "orient": "right"},
    "bar": {"cornerRadiusEnd": 2},
}


def _v(x: Any) -> Any:
    if isinstance(x, datetime):
        return x.isoformat(timespec="seconds")
    if isinstance(x, date):
        return x.isoformat()
    return x


def _values(rows: list[dict]) -> list[dict]:
    return [{k: _v(v) for k, v in r.items()} for r in rows]


def spec(rows: list[dict], *, height: int = 220, **body: Any) -> dict[str, Any]:
    return {"$schema": SCHEMA, "width": "container", "height": height,
            "data": {"values": _values(rows)}, "config": CONFIG, **body}


def grade_scale(grades: list[str]) -> dict[str, Any]:
    if len(grades) <= len(GRADE_COLOURS):
        if len(grades) == 1:
            return {"domain": grades, "range": GRADE_COLOURS[:1]}
        return {"domain": grades, "range": GRADE_COLOURS[:len(grades) - 1] + ["#94a3b8"]}
    return {"domain": grades, "scheme": "viridis"}


def new_by_grade(rows: list[dict], grades: list[str]) -> dict:
    order = grades + sorted({r["grade"] for r in rows} - set(grades))
    return spec(rows, mark={"type": "bar", "tooltip": True}, encoding={
        "x": {"field": "day", "type": "temporal", "timeUnit": "yearmonthdate", "title": None,
              "axis": {"format": "%b %d", "labelAngle": 0, "tickCount": 8}},
        "y": {"aggregate": "sum", "field": "leads", "type": "quantitative", "title": "new leads"},
        "color": {"field": "grade", "type": "ordinal", "scale": grade_scale(order),
                  "sort": order, "title": "grade"},
        "order": {"field": "grade_rank", "type": "ordinal"},
    }, transform=[{"calculate": f"indexof({order!r}, datum.grade)", "as": "grade_rank"}])


def grade_history(rows: list[dict], grades: list[str]) -> dict:
    order = grades + sorted({r["grade"] for r in rows} - set(grades))
    return spec(rows, mark={"type": "area", "tooltip": True, "interpolate": "monotone"},
                encoding={
        "x": {"field": "as_of", "type": "temporal", "title": "scoring run",
              "axis": {"format": "%b %d", "labelAngle": 0}},
        "y": {"field": "people", "type": "quantitative", "stack": "normalize",
              "title": "share of people", "axis": {"format": "%"}},
        "color": {"field": "grade", "type": "ordinal", "scale": grade_scale(order),
                  "sort": order, "title": "grade"},
        "order": {"field": "grade_rank", "type": "ordinal"},
    }, transform=[{"calculate": f"indexof({order!r}, datum.grade)", "as": "grade_rank"}])


def mql_by_source_week(rows: list[dict]) -> dict:
    return spec(rows, mark={"type": "bar", "tooltip": True}, encoding={
        "x": {"field": "week", "type": "ordinal", "timeUnit": "yearmonthdate",
              "title": "week of sign-up", "axis": {"format": "%b %d", "labelAngle": 0}},
        "y": {"aggregate": "sum", "field": "mql", "type": "quantitative", "title": "MQLs"},
        "color": {"field": "source", "type": "nominal", "title": "source",
                  "scale": {"range": CATEGORY_COLOURS}},
    })


def conversion_by_grade(rows: list[dict], grades: list[str]) -> dict:
    data = [{**r, "kind": "MQL" if r["mql"] else "not MQL", "rate": r["rate"] or 0} for r in rows]
    return spec(data, mark={"type": "bar", "tooltip": True}, encoding={
        "x": {"field": "grade", "type": "ordinal", "sort": [r["grade"] for r in rows],
              "title": "grade", "axis": {"labelAngle": 0}},
        "y": {"field": "rate", "type": "quantitative", "title": "converted",
              "axis": {"format": "%"}},
        "color": {"field": "kind", "type": "nominal", "title": None,
                  "scale": {"domain": ["MQL", "not MQL"], "range": ["#0f766e", "#94a3b8"]}},
        "tooltip": [{"field": "grade"}, {"field": "leads", "type": "quantitative"},
                    {"field": "converted", "type": "quantitative"},
                    {"field": "rate", "type": "quantitative", "format": ".1%"}],
    })


def funnel(rows: list[dict]) -> dict:
    return spec(rows, height=190, layer=[
        {"mark": {"type": "bar", "color": "#2563eb", "tooltip": True}},
        {"mark": {"type": "text", "align": "left", "dx": 4, "color": "#334155"},
         "encoding": {"text": {"field": "reached", "type": "quantitative", "format": ","}}},
    ], encoding={
        "y": {"field": "stage", "type": "nominal", "sort": [r["stage"] for r in rows],
              "title": None},
        "x": {"field": "reached", "type": "quantitative", "title": "people at or past the stage"},
    })


def campaign_costs(rows: list[dict], by: str) -> dict:
    data = [r for r in rows if r.get("cost_per_good_lead") is not None]
    return spec(data, height=max(120, 26 * len(data)), mark={"type": "bar", "tooltip": True,
                                                             "color": "#d97706"}, encoding={
        "y": {"field": "key", "type": "nominal", "sort": "-x", "title": None},
        "x": {"field": "cost_per_good_lead", "type": "quantitative",
              "title": "cost per good lead", "axis": {"format": "$,.0f"}},
        "tooltip": [{"field": "key", "title": by}, {"field": "good_leads", "title": "good leads"},
                    {"field": "cost", "format": "$,.0f"},
                    {"field": "cost_per_good_lead", "format": "$,.0f"}],
    })


def campaign_quality(rows: list[dict], by: str) -> dict:
    data = []
    for r in rows[:15]:
        data.append({"key": r["key"], "what": "other leads", "n": r["leads"] - r["good_leads"]})
        data.append({"key": r["key"], "what": "good leads", "n": r["good_leads"]})
    return spec(data, height=max(120, 26 * min(len(rows), 15)),
                mark={"type": "bar", "tooltip": True}, encoding={
        "y": {"field": "key", "type": "nominal", "sort": [r["key"] for r in rows[:15]],
              "title": None},
        "x": {"field": "n", "type": "quantitative", "title": "leads"},
        "color": {"field": "what", "type": "nominal", "title": None,
                  "scale": {"domain": ["good leads", "other leads"],
                            "range": ["#0f766e", "#cbd5e1"]}},
        "order": {"field": "what", "sort": "ascending"},
    })


def backtest_grades(grades: list[dict]) -> dict:
    data = [{**g, "rate": g["conversion_rate"] or 0, "kind": "MQL" if g["mql"] else "not MQL"}
            for g in grades]
    return spec(data, mark={"type": "bar", "tooltip": True}, encoding={
        "x": {"field": "grade", "type": "ordinal", "sort": [g["grade"] for g in grades],
              "axis": {"labelAngle": 0}},
        "y": {"field": "rate", "type": "quantitative", "title": "converted within horizon",
              "axis": {"format": "%"}},
        "color": {"field": "kind", "type": "nominal", "title": None,
                  "scale": {"domain": ["MQL", "not MQL"], "range": ["#0f766e", "#94a3b8"]}},
    })


def backtest_weeks(weeks: list[dict]) -> dict:
    return spec(weeks, height=180, mark={"type": "line", "point": True, "tooltip": True,
                                         "color": "#2563eb"}, encoding={
        "x": {"field": "cutoff", "type": "temporal", "title": "cut-off",
              "axis": {"format": "%b %d", "labelAngle": 0}},
        "y": {"field": "mql", "type": "quantitative", "title": "MQLs"},
    })


def calibration(rows: list[dict]) -> dict:
    top = max([0.05] + [max(r.get("mean_predicted") or 0, r.get("observed_rate") or 0)
                        for r in rows])
    return spec(rows, height=220, layer=[
        {"data": {"values": [{"x": 0, "y": 0}, {"x": top, "y": top}]},
         "mark": {"type": "line", "strokeDash": [4, 4], "color": "#94a3b8"},
         "encoding": {"x": {"field": "x", "type": "quantitative"},
                      "y": {"field": "y", "type": "quantitative"}}},
        {"mark": {"type": "line", "point": True, "color": "#0f766e", "tooltip": True},
         "encoding": {"x": {"field": "mean_predicted", "type": "quantitative",
                            "title": "predicted probability", "axis": {"format": "%"}},
                      "y": {"field": "observed_rate", "type": "quantitative",
                            "title": "observed conversion", "axis": {"format": "%"}}}},
    ])


def lift(buckets: list[dict]) -> dict:
    """Cumulative share of conversions against cumulative share of leads, best bucket first."""
    pts = [{"leads": 0.0, "conversions": 0.0, "bucket": "", "line": "model"}]
    cl = cc = 0.0
    for b in buckets:
        if "holdout" in str(b.get("bucket", "")):
            continue
        cl += b.get("share_of_leads") or 0
        cc += b.get("share_of_conversions") or 0
        pts.append({"leads": cl, "conversions": cc, "bucket": b["bucket"], "line": "model"})
    pts += [{"leads": 0.0, "conversions": 0.0, "bucket": "", "line": "random"},
            {"leads": 1.0, "conversions": 1.0, "bucket": "", "line": "random"}]
    return spec(pts, height=220, mark={"type": "line", "point": True, "tooltip": True},
                encoding={
        "x": {"field": "leads", "type": "quantitative", "title": "share of leads (best first)",
              "axis": {"format": "%"}},
        "y": {"field": "conversions", "type": "quantitative", "title": "share of conversions",
              "axis": {"format": "%"}},
        "color": {"field": "line", "type": "nominal", "title": None,
                  "scale": {"domain": ["model", "random"], "range": ["#0f766e", "#94a3b8"]}},
    })


def bucket_conversion(buckets: list[dict]) -> dict:
    return spec(buckets, height=200, mark={"type": "bar", "tooltip": True, "color": "#0f766e"},
                encoding={
        "x": {"field": "bucket", "type": "nominal", "sort": None, "axis": {"labelAngle": 0},
              "title": None},
        "y": {"field": "conversion_rate", "type": "quantitative", "title": "conversion rate",
              "axis": {"format": "%"}},
    })


def score_history(rows: list[dict]) -> dict:
    return spec(rows, height=140, mark={"type": "line", "point": True, "tooltip": True,
                                        "color": "#0f766e"}, encoding={
        "x": {"field": "as_of", "type": "temporal", "title": None,
              "axis": {"format": "%b %d", "labelAngle": 0, "tickCount": 6}},
        "y": {"field": "score", "type": "quantitative", "title": "score"},
    })
