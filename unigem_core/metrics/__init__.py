"""Generation metrics of the paper (spec 8): bond orders, stability, RDKit validity/uniqueness/novelty; and QM9 as
a reference: its molecules found by bond graph or similarity, with their DFT values (lookup)."""
from unigem_core.metrics.bonds import bond_order, bond_order_matrix
from unigem_core.metrics.rdkit_metrics import (
    MoleculeCheck,
    build_rdkit_mol,
    check_molecule,
    generation_metrics,
    graph_key,
    to_smiles,
)
from unigem_core.metrics.lookup import QM9Entry, QM9Lookup, Similar, qm9_lookup
from unigem_core.metrics.reference import reference_molecules, training_smiles
from unigem_core.metrics.stability import ALLOWED_VALENCES, ValenceProblem, atom_stability, is_stable, valence_problems

__all__ = [
    "ALLOWED_VALENCES",
    "MoleculeCheck",
    "QM9Entry",
    "QM9Lookup",
    "Similar",
    "ValenceProblem",
    "atom_stability",
    "bond_order",
    "bond_order_matrix",
    "build_rdkit_mol",
    "check_molecule",
    "generation_metrics",
    "graph_key",
    "is_stable",
    "qm9_lookup",
    "reference_molecules",
    "to_smiles",
    "training_smiles",
    "valence_problems",
]
