"""Browser-side pieces of the app: the 3Dmol.js molecule viewer and the trajectory player (no torch)."""
