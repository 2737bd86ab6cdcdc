"""The answer for each input record (Prediction) and the table rows made of answers; no torch here, so the app's
tables build without the model's packages (api.predict_records makes the answers)."""
from __future__ import annotations

from dataclasses import dataclass

from unigem_core.constants import PROPERTIES
from unigem_core.metrics.lookup import QM9Entry, Similar



def built_geometry(relaxation: str | None, refined: bool) -> str:
    """Prediction.geometry of a molecule built from its bonds (a SMILES, a 2D drawing): how its conformers were
    relaxed ("built (MMFF94 + GFN2-xTB), refined by the model"; Molecule.relaxation: RDKit's ETKDG embedding
    comes first) and whether the model refined them."""
    return f"built ({relaxation or 'ETKDG'})" + (", refined by the model" if refined else "")


@dataclass
class Prediction:
    """The answer for one input record: properties in reporting units, or why it was refused."""

    index: int
    name: str
    formula: str = ""
    n_atoms: int = 0
    properties: dict[str, float] | None = None  # a molecule built as several conformers: the mean over them
    by_conformer: tuple[dict[str, float], ...] = ()  # where several: each conformer's (Molecule.conformers order)
    conformers: int = 0  # geometries the properties were read from: 1 for a given geometry, 0 if refused
    error: str | None = None
    warnings: tuple[str, ...] = ()
    source: str = ""
    geometry: str = ""  # "given", or how it was built (built_geometry)
    qm9: tuple[QM9Entry, ...] = ()  # QM9's molecules with this bond graph (with a lookup), by QM9 number
    closest: Similar | None = None  # where QM9 does not hold it (with a lookup), the most similar QM9 molecule

    @property
    def ranges(self) -> dict[str, tuple[float, float]] | None:
        """Each property's (lowest, highest) value over the conformers; None for a single geometry."""
        if len(self.by_conformer) < 2:
            return None
        return {key: (min(c[key] for c in self.by_conformer), max(c[key] for c in self.by_conformer))
                for key in self.by_conformer[0]}


def mean_properties(each: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each property over a molecule's geometries (api.predict_molecules gives one dict per geometry)."""
    return {key: sum(e[key] for e in each) / len(each) for key in each[0]}


def predictions_table(predictions: list[Prediction], qm9: bool = False, ranges: bool = False) -> list[dict]:
    """Rows for CSV and the app's table: name, formula, n_atoms, geometry, conformers, one column per property
    (with unit), error, warnings. ranges adds each property's lowest and highest value over a built molecule's
    conformers ("min gap [meV]", "max gap [meV]"; empty for a single geometry).

    qm9 (predictions made with a lookup) adds the first QM9 molecule with the record's bond graph: its number,
    split and DFT values ("qm9 gap [meV]"), and the numbers of any others ("qm9_others": stereoisomers, or
    QM9's duplicates); empty where QM9 has none, where the most similar QM9 molecule and its Tanimoto
    similarity stand instead ("qm9_closest", "qm9_closest_tanimoto").
    """
    rows = []
    for p in predictions:
        row = {"name": p.name, "formula": p.formula, "n_atoms": p.n_atoms, "geometry": p.geometry,
               "conformers": p.conformers or None}
        for spec in PROPERTIES:
            row[spec.column] = None if p.properties is None else p.properties[spec.key]
        if ranges:
            spread = p.ranges
            for spec in PROPERTIES:
                low, high = spread[spec.key] if spread else (None, None)
                row[f"min {spec.column}"], row[f"max {spec.column}"] = low, high
        if qm9:
            first = p.qm9[0] if p.qm9 else None
            row.update({"qm9_number": first and first.number, "qm9_split": first.split if first else "",
                        "qm9_others": " ".join(str(e.number) for e in p.qm9[1:]),
                        "qm9_closest": p.closest and p.closest.entry.number,
                        "qm9_closest_tanimoto": p.closest and round(p.closest.tanimoto, 3)})
            for spec in PROPERTIES:
                row[f"qm9 {spec.column}"] = first and first.properties[spec.key]
        row["error"] = p.error or ""
        row["warnings"] = "; ".join(p.warnings)
        rows.append(row)
    return rows
