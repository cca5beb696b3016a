"""The metric series a calsurr server exports, read from service/metrics.py's collectors (no server started)."""

from __future__ import annotations

import re
from functools import cache

# What Prometheus adds to a family's name per type (histograms, counters, info metrics).
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "info": ("_info",), "gauge": ("",)}
NAME = re.compile(r"\b(calsurr(?:_|:)[a-zA-Z0-9_:]*)")


@cache
def exported_series() -> frozenset[str]:
    from calsurr.service.metrics import RepositoryCollector, ServerMetrics

    metrics = ServerMetrics()
    families = [*metrics.registry.collect(), *RepositoryCollector._families()]
    names = set()
    for family in families:
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    return set(NAME.findall(expr))
