"""What every benchmark prints: the medians of its rounds as a Markdown table, for the README."""

from __future__ import annotations

import statistics


def medians(results: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in results.items()}


def print_seconds(title: str, med: dict[str, float]) -> None:
    print(f"\n{title}\n")
    print("| what | seconds |")
    print("|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} |")


def verdict(name: str, checks: list[tuple[str, float, str, float]], margin: float = 0.0) -> bool:
    """The last line of every benchmark, the same for people and for CI: PASS or FAIL, then each
    check as `what measured op target`. A check is (what, measured, "≤" | "≥" | "<", target);
    with a margin (a fraction) it fails only when the measure passes its target by more than that."""
    def met(value: float, op: str, target: float) -> bool:
        if op == "≥":
            return value >= target * (1 - margin)
        return value <= target * (1 + margin) if op == "≤" else value < target * (1 + margin)

    results = [(what, value, op, target, met(value, op, target)) for what, value, op, target in checks]
    ok = all(r[-1] for r in results)
    parts = [f"{what} {value:.2f} {op} {target:g}{'' if good else ' MISSED'}" for what, value, op, target, good in results]
    allowance = f" (margin {margin:.0%})" if margin else ""
    print(f"{name}: {'PASS' if ok else 'FAIL'}{allowance}: " + "; ".join(parts), flush=True)
    return ok
