"""Property targets: keep the generated molecules whose predicted properties fall in chosen ranges.

UniGEM predicts all twelve properties of every molecule it generates, from the same network, so a
design run can sample seeds until it has molecules predicted to lie in a window ("gap >= 7,000 meV,
mu <= 1 D"): generation.generate_valid screens each molecule with `within`. The screen is on the
model's predictions, which carry its typical error (the model card's test MAE); bounds are inclusive
and in the reporting units of constants.PROPERTIES.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from unigem_core.constants import PROPERTIES, PROPERTY_KEYS

_UNITS = {p.key: p.report_unit for p in PROPERTIES}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_KEY = r"[A-Za-z][A-Za-z0-9]*"
_LOWER = {">=", ">", "≥"}  # KEY >= V sets a lower bound; V <= KEY too
_FORMS = (
    re.compile(rf"^(?P<low>{_NUMBER})(?:<=|<|≤)(?P<key>{_KEY})(?:<=|<|≤)(?P<high>{_NUMBER})$"),
    re.compile(rf"^(?P<key>{_KEY})(?P<op>>=|<=|>|<|≥|≤)(?P<value>{_NUMBER})$"),
)
SYNTAX = "KEY>=VALUE, KEY<=VALUE or LOW<=KEY<=HIGH"


def _format(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


@dataclass(frozen=True)
class PropertyRange:
    """low <= properties[key] <= high, in reporting units; a missing bound is open."""

    key: str
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.key not in PROPERTY_KEYS:
            raise ValueError(f"unknown property {self.key!r}; choose from {', '.join(PROPERTY_KEYS)}")
        if self.low is None and self.high is None:
            raise ValueError(f"the target on {self.key} needs a lower or an upper bound")
        for bound in (self.low, self.high):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"the bounds on {self.key} must be finite numbers")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"the target on {self.key} is empty: {_format(self.low)} > {_format(self.high)}")

    def contains(self, properties: Mapping[str, float] | None) -> bool:
        value = (properties or {}).get(self.key)
        if value is None or not math.isfinite(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self) -> str:
        """E.g. "gap ≥ 7,000 meV" or "1.5 ≤ mu ≤ 3 D"."""
        unit = _UNITS[self.key]
        if self.low is not None and self.high is not None:
            return f"{_format(self.low)} ≤ {self.key} ≤ {_format(self.high)} {unit}"
        if self.low is not None:
            return f"{self.key} ≥ {_format(self.low)} {unit}"
        return f"{self.key} ≤ {_format(self.high)} {unit}"


def parse_range(text: str) -> PropertyRange:
    """"gap>=7000", "mu<=1", "1.5<=mu<=3" (spaces allowed; < and > count as <= and >=) -> PropertyRange."""
    compact = re.sub(r"\s+", "", text)
    for form in _FORMS:
        match = form.match(compact)
        if match is None:
            continue
        parts = match.groupdict()
        if "op" not in parts:
            return PropertyRange(parts["key"], float(parts["low"]), float(parts["high"]))
        value = float(parts["value"])
        if parts["op"] in _LOWER:
            return PropertyRange(parts["key"], low=value)
        return PropertyRange(parts["key"], high=value)
    raise ValueError(f"cannot read the property target {text!r}: write {SYNTAX} (for example gap>=7000)")


def within(properties: Mapping[str, float] | None, ranges: Sequence[PropertyRange]) -> bool:
    """Whether predicted properties meet every target (True when there are none)."""
    return all(r.contains(properties) for r in ranges)


def describe(ranges: Sequence[PropertyRange]) -> str:
    return ", ".join(r.describe() for r in ranges)
