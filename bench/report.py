"""Judging and presenting one run: ratios to the ceiling, budget verdicts, the table, the JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.endpoints import Budget
from bench.wrk import WrkResult

__all__ = ["Row", "format_table", "judge", "write_results"]


@dataclass(frozen=True)
class Row:
    """One measured endpoint with its verdict.

    ``verdict`` is ``pass``, ``FAIL``, ``report`` (no budget) or ``ref`` (the ceiling itself).
    """

    label: str
    target: str  # "ceiling" or "service"
    method: str
    path: str
    result: WrkResult
    ratio: float
    p99_ratio: float
    budget: Budget | None
    verdict: str
    reasons: tuple[str, ...]

    @property
    def failed(self) -> bool:
        """Whether this row makes the run fail."""
        return self.verdict == "FAIL"

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the results file."""
        return {
            "endpoint": self.label,
            "target": self.target,
            "method": self.method,
            "path": self.path,
            **self.result.to_json(),
            "ratio": round(self.ratio, 4),
            "p99_ratio": round(self.p99_ratio, 4),
            "budget": None
            if self.budget is None
            else {
                "min_ratio": self.budget.min_ratio,
                "max_p99_ratio": self.budget.max_p99_ratio,
                "max_p99_ms": self.budget.max_p99_ms,
            },
            "verdict": self.verdict,
            "reasons": list(self.reasons),
        }


def judge(
    *,
    label: str,
    target: str,
    method: str,
    path: str,
    result: WrkResult,
    ceiling: WrkResult,
    budget: Budget | None,
    problems: Sequence[str] = (),
) -> Row:
    """Compare one result with the ceiling's and apply its budget.

    Any failed request fails the row, and so does any of ``problems`` (e.g. a setup hook error).
    """
    ratio = result.rps / ceiling.rps if ceiling.rps else 0.0
    p99_ratio = result.p99_ms / ceiling.p99_ms if ceiling.p99_ms else float("inf")
    reasons = _reasons(result, ratio, p99_ratio, budget) if not problems else list(problems)
    if reasons:
        verdict = "FAIL"
    elif target == "ceiling":
        verdict = "ref"
    elif budget is None:
        verdict = "report"
    else:
        verdict = "pass"
    return Row(
        label=label,
        target=target,
        method=method,
        path=path,
        result=result,
        ratio=ratio,
        p99_ratio=p99_ratio,
        budget=budget,
        verdict=verdict,
        reasons=tuple(reasons),
    )


def _reasons(result: WrkResult, ratio: float, p99_ratio: float, budget: Budget | None) -> list[str]:
    reasons: list[str] = []
    if result.errors:
        reasons.append(
            f"{result.errors} failed requests (non-2xx {result.non2xx}, rejected "
            f"{result.rejected}, connect "
            f"{result.connect_errors}, read {result.read_errors}, write {result.write_errors}, "
            f"timeout {result.timeout_errors})"
        )
    if result.requests == 0:
        reasons.append("no request completed")
    if budget is not None and budget.min_ratio is not None and ratio < budget.min_ratio:
        reasons.append(f"req/s ratio {ratio:.2f} < {budget.min_ratio:.2f}")
    if budget is not None and budget.max_p99_ratio is not None and p99_ratio > budget.max_p99_ratio:
        reasons.append(f"p99 ratio {p99_ratio:.2f} > {budget.max_p99_ratio:.2f}")
    if budget is not None and budget.max_p99_ms is not None and result.p99_ms >= budget.max_p99_ms:
        reasons.append(f"p99 {result.p99_ms:.1f} ms >= {budget.max_p99_ms:g} ms")
    return reasons


_COLUMNS = (
    "endpoint",
    "req/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "ratio",
    "budget",
    "result",
)


def _cells(row: Row) -> tuple[str, ...]:
    r = row.result
    p95 = "n/a" if r.p95_ms is None else f"{r.p95_ms:.2f}"
    budget = "-" if row.target == "ceiling" else (row.budget.describe() if row.budget else "report")
    return (
        row.label,
        f"{r.rps:,.0f}",
        f"{r.p50_ms:.2f}",
        p95,
        f"{r.p99_ms:.2f}",
        str(r.errors),
        f"{row.ratio:.2f}",
        budget,
        row.verdict,
    )


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width table, then one line per failure reason."""
    cells = [_COLUMNS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]

    def render(line: Sequence[str]) -> str:
        first = line[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    out = [render(cells[0]), "  ".join("-" * w for w in widths)]
    out += [render(line) for line in cells[1:]]
    out += [f"FAIL {row.label}: {reason}" for row in rows for reason in row.reasons]
    return "\n".join(out)


def write_results(document: dict[str, Any], results_dir: Path, stamp: str) -> list[Path]:
    """Write ``<stamp>.json`` and ``latest.json``; returns both paths."""
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    paths = [results_dir / f"{stamp}.json", results_dir / "latest.json"]
    for path in paths:
        path.write_text(text)
    return paths
