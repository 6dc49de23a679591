"""Reading a broker's Prometheus metrics in tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (0 when there is none yet)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    wanted = tuple(sorted(labels.items()))
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and tuple(sorted(s.labels.items())) == wanted:
                return float(s.value)
    return 0.0
