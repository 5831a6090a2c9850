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
