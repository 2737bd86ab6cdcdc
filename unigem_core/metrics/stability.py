"""Atom and molecule stability: valences from the distance bond rule (spec 8.2).

An atom is stable when the sum of its bond orders (spec 8.1) equals an allowed valence of its
element. Formal charges are not considered, so e.g. a nitro group's N (valence 4) is unstable.
This check uses the bond table only, never RDKit (spec 11 item 10).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unigem_core.metrics.bonds import bond_order_matrix

# Allowed valences per element (spec 8.2). QM9 uses the first five; the rest serve GEOM-Drugs.
ALLOWED_VALENCES: dict[str, tuple[int, ...]] = {
    "H": (1,), "C": (4,), "N": (3,), "O": (2,), "F": (1,),
    "B": (3,), "Al": (3,), "Si": (4,), "P": (3, 5), "S": (4,), "Cl": (1,), "As": (3,),
    "Br": (1,), "I": (1,), "Hg": (1, 2), "Bi": (3, 5),
}


def stability_from_orders(symbols: Sequence[str], orders: np.ndarray) -> np.ndarray:
    """[n] bool per-atom stability given a precomputed [n, n] bond-order matrix.

    Elements without an allowed-valence entry are never stable.
    """
    valence = np.asarray(orders).sum(axis=1)  # [n]
    return np.array([int(v) in ALLOWED_VALENCES.get(s, ()) for s, v in zip(symbols, valence)], dtype=bool)


def atom_stability(symbols: Sequence[str], positions: np.ndarray) -> np.ndarray:
    """[n] bool: whether each atom's valence is allowed (spec 8.2). ``positions`` is [n, 3] Angstrom."""
    return stability_from_orders(symbols, bond_order_matrix(symbols, positions))


def is_stable(symbols: Sequence[str], positions: np.ndarray) -> bool:
    """Molecule stability (spec 8.2): every atom is stable."""
    return bool(atom_stability(symbols, positions).all())


@dataclass(frozen=True)
class ValenceProblem:
    """One unstable atom: its bond-order sum is not an allowed valence of its element."""

    index: int  # 0-based position in the molecule; shown 1-based, as the viewer's hover labels are
    symbol: str
    valence: int  # sum of the bond orders that the distance rule gives this atom
    allowed: tuple[int, ...]  # the element's allowed valences; empty for an element without an entry

    @property
    def label(self) -> str:
        """The atom as the viewer labels it: element and 1-based position, e.g. "C5"."""
        return f"{self.symbol}{self.index + 1}"

    def __str__(self) -> str:
        """E.g. "C5 has valence 3 (C takes 4)"."""
        if not self.allowed:
            return f"{self.label} has valence {self.valence} (no allowed valence is tabulated for {self.symbol})"
        return f"{self.label} has valence {self.valence} ({self.symbol} takes {' or '.join(map(str, self.allowed))})"

def valence_problems(symbols: Sequence[str], positions: np.ndarray) -> list[ValenceProblem]:
    """The unstable atoms of a molecule and why, in atom order; empty for a stable molecule."""
    orders = bond_order_matrix(symbols, positions)  # [n, n]
    valence = orders.sum(axis=1)  # [n]
    unstable = np.flatnonzero(~stability_from_orders(symbols, orders))
    return [ValenceProblem(int(i), symbols[i], int(valence[i]), ALLOWED_VALENCES.get(symbols[i], ())) for i in unstable]
