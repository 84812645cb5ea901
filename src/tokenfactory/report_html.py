"""The planner's reports as one HTML page each: the charts and the key numbers beside them.

A page is self-contained: its style is inline, its charts are PNG files beside it named
relatively, and nothing is fetched from elsewhere. Every value on it is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from tokenfactory.render_sim import key_figures, usd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 68rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1rem 0; } img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; }
.note { color: #555; }
"""


@dataclass(frozen=True, slots=True)
class Chart:
    """A PNG beside the page and what it shows."""

    file: str
    caption: str


def simulation_page(title: str, summary: Mapping[str, Any], charts: Sequence[Chart]) -> str:
    """`simulate --out`: the key numbers, the per-tier table, then the charts."""
    s = summary
    rows = key_figures(s)
    body = [
        _table(("", "value"), rows),
        "<h2>Per tier</h2>",
        tier_table(s),
        *(_figure(c) for c in charts),
    ]
    return _page(title, body)


def tier_table(summary: Mapping[str, Any]) -> str:
    """One row per tier offered: service, latency, money (cost attributed by work)."""
    head = (
        "tier", "requests", "done", "refused", "abandoned", "TTFT p99 ms", "TPOT p99 ms",
        "E2E p99 ms", "SLO met", "goodput tok/s", "revenue", "cost", "profit",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = [
        (
            name,
            f"{t['requests']:,}",
            f"{t['requests_completed']:,}",
            f"{t['refused']:,}",
            f"{t['abandoned']:,}",
            f"{t['ttft_ms']['p99']:,.0f}",
            f"{t['tpot_ms']['p99']:,.1f}",
            f"{t['e2e_ms']['p99']:,.0f}",
            f"{t['slo_attainment']:.1%}",
            f"{t['goodput_tokens_per_s']:,.0f}",
            usd(t["revenue_usd"]),
            usd(t["cost_usd"]),
            usd(t["profit_usd"]),
        )
        for name, t in summary["per_tier"].items()
    ]
    rows.append(("idle", *[""] * 10, usd(summary["idle_cost_usd"]), usd(-summary["idle_cost_usd"])))
    return _table(head, rows)


def plan_page(
    title: str,
    plan: Mapping[str, Any],
    shown: Sequence[Mapping[str, Any]],
    ranking: Chart,
    best: Mapping[str, Any] | None = None,
    charts: Sequence[Chart] = (),
    notes: Sequence[str] = (),
) -> str:
    """`plan --out`: the reason, the ranked fleets, then the best fleet's P&L and charts.

    `plan` is the `plan --json` object, `shown` the candidates to list (best first, then
    the closest misses), `best` the summary of the best fleet's simulation if there is one,
    `charts` and `notes` about it.
    """
    tiers = list(plan["objectives"]) or sorted({t for c in shown for t in c["slo_attainment"]})
    head = (
        "#", "fleet", "policy", "meets objectives", "profit", "profit $/h", "$/1M",
        f"SLO met % ({' / '.join(tiers)})", "tok/s/GPU",
    )  # fmt: skip
    rows = [
        (
            str(i + 1),
            f"{c['gpu']} x{c['gpus']} TP{c['tensor_parallel']}",
            c["policy"],
            "yes" if c["feasible"] else "no",
            usd(c["profit_usd"]),
            f"{c['profit_per_hour']:,.2f}",
            _opt_usd(c["cost_per_million_tokens"]),
            " / ".join(_pct(c["slo_attainment"].get(t)) for t in tiers),
            f"{c['tokens_per_s_per_gpu']:,.0f}",
        )
        for i, c in enumerate(shown)
    ]
    body = [f"<p>{escape(plan['reason'])}</p>", _figure(ranking), _table(head, rows)]
    body += [f'<p class="note">skipped {escape(line)}</p>' for line in plan["skipped"]]
    if best is not None and plan["best"] is not None:
        body += [
            f"<h2>The best fleet: {escape(plan['best']['name'])}</h2>",
            _table(
                ("", "value"),
                [
                    ("revenue", usd(best["revenue_usd"])),
                    ("cost", usd(best["cost_usd"])),
                    ("of which idle", usd(best["idle_cost_usd"])),
                    ("profit", usd(best["profit_usd"])),
                ],
            ),
            tier_table(best),
        ]
    body += [f'<p class="note">{escape(n)}</p>' for n in notes]
    body += [_figure(c) for c in charts]
    return _page(title, body)


def _opt_usd(value: float | None) -> str:
    return "-" if value is None else usd(value)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    lines = [f"<table>\n<tr>{cells}</tr>"]
    lines += ["<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>" for row in rows]
    return "\n".join(lines) + "\n</table>"


def _figure(chart: Chart) -> str:
    src, caption = escape(chart.file), escape(chart.caption)
    return f'<figure><img src="{src}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def _page(title: str, body: Sequence[str]) -> str:
    parts = "\n".join(body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{parts}\n</body>\n</html>\n"
    )
