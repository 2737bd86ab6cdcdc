"""GFN2-xTB relaxation of built conformers (tblite), the last step of building a molecule from its bonds.

A force field's geometry (MMFF94) differs from the DFT geometries QM9's values belong to in its bond lengths and
angles, and the property head reads those: on QM9 validation molecules rebuilt from their SMILES, relaxing each
MMFF conformer with GFN2-xTB brought the predicted alpha, HOMO, LUMO, U0 and Cv 16-28 % closer to QM9's values
(bench/NOTES.md, "GFN2-xTB geometries"). A conformer costs about 20 energy-and-gradient calls, 0.1-0.2 s for a
QM9-sized molecule on one core.

The minimiser is L-BFGS with a strong Wolfe line search (torch.optim.LBFGS, float64), stopped when no gradient
component exceeds GRADIENT_TOLERANCE (xtb's "normal" optimisation level).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

import numpy as np

BOHR = 0.529177210903  # Angstrom per bohr (CODATA 2018), tblite's length unit
HARTREE_KCAL = 627.509474  # kcal/mol per hartree
GRADIENT_TOLERANCE = 1e-3  # hartree/bohr, largest component; 5e-4 moved atoms 0.04 A RMS more (soft torsions)
MAX_EVALUATIONS = 300  # energy-and-gradient calls per conformer; QM9-sized molecules need 10-60
METHOD = "GFN2-xTB"


class RelaxationError(RuntimeError):
    """tblite is missing, or its SCF or the minimisation failed for this geometry; the message is one line."""


def relax(numbers: np.ndarray, positions: np.ndarray, unpaired: int = 0) -> tuple[np.ndarray, float]:
    """A GFN2-xTB minimum near `positions` ([n, 3] Angstrom; `numbers` [n] atomic numbers, a neutral molecule with
    `unpaired` unpaired electrons) -> (positions [n, 3] Angstrom, energy in hartree)."""
    import torch  # the minimiser; imported here, so that reading files needs no torch

    interface = _interface()
    _one_openmp_thread()
    x = torch.tensor(np.asarray(positions, dtype=np.float64) / BOHR, requires_grad=True)  # [n, 3] bohr
    try:
        calculator = interface.Calculator(METHOD, np.asarray(numbers, dtype=np.int32), x.detach().numpy(),
                                          charge=0.0, uhf=int(unpaired))
        calculator.set("verbosity", 0)
        last: list = [None]

        def energy() -> torch.Tensor:
            calculator.update(positions=x.detach().numpy())
            last[0] = calculator.singlepoint(last[0])  # the previous point's wavefunction starts the SCF
            x.grad = torch.from_numpy(last[0].get("gradient"))  # [n, 3] hartree/bohr
            return torch.tensor(last[0].get("energy"))

        optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=MAX_EVALUATIONS, max_eval=MAX_EVALUATIONS,
                                      tolerance_grad=GRADIENT_TOLERANCE, tolerance_change=1e-10, history_size=50,
                                      line_search_fn="strong_wolfe")
        optimiser.step(energy)
        result = last[0]
    except Exception as exc:  # tblite raises its own errors on SCF failure; the caller keeps the input geometry
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise RelaxationError(f"{METHOD} failed ({reason[:200]})") from None
    if not np.isfinite(x.detach().numpy()).all() or np.abs(result.get("gradient")).max() > 10 * GRADIENT_TOLERANCE:
        raise RelaxationError(f"{METHOD} did not converge")
    return x.detach().numpy() * BOHR, float(result.get("energy"))


@cache
def _interface():
    try:
        from tblite import interface
    except ImportError as exc:  # tblite ships Linux and macOS wheels; elsewhere the force field's geometry stays
        raise RelaxationError(f"tblite is not installed ({exc})") from None
    return interface


@cache
def _gomp() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("gomp")
    try:
        return ctypes.CDLL(name or "libgomp.so.1")
    except OSError:
        return None


def _one_openmp_thread() -> None:
    """tblite runs on the system's OpenMP runtime (not torch's), which would start a thread per core: for a
    QM9-sized molecule on a busy 2-core machine that was 5x slower than one. The setting belongs to the
    calling thread (each Streamlit session has its own), so it is made before every relaxation."""
    gomp = _gomp()
    if gomp is not None:
        gomp.omp_set_num_threads(1)
