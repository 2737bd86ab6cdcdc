"""UniGEM: one diffusion model that generates 3D molecules and predicts their properties."""
import os

# OpenMP threads that wait at a barrier sleep instead of spinning. On a small shared CPU (the app's
# concurrent sessions, a training run beside an evaluation) spinning threads starve the thread being
# waited for: measured here, a training run beside a benchmark went from 12 to 270 molecules/s.
# Takes effect only if torch is imported after this package; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
