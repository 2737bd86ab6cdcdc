"""UniGEM Studio, the Streamlit app: `streamlit run app/main.py`.

This entry point only builds the navigation; each page lives in app/views/. The model is loaded
once per process in app/resources.py and shared by every browser session. Before anything else it
makes sure Streamlit sees the top-level streamlit_config.toml (see app/bootstrap.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `streamlit run` puts app/ on sys.path, not the repository root
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402

from app import resources  # noqa: E402
from app.bootstrap import ensure_config_link  # noqa: E402
from app.state import TARGET_KEY, WIDGET_DEFAULTS  # noqa: E402


def main() -> None:
    ensure_config_link()
    st.set_page_config(page_title="UniGEM Studio", page_icon="⚛️", layout="wide")
    for key, default in WIDGET_DEFAULTS.items():  # set once, then keep across page switches
        st.session_state[key] = st.session_state.get(key, default)
    for key in [k for k in st.session_state if str(k).startswith(TARGET_KEY)]:  # the target sliders, likewise
        st.session_state[key] = st.session_state[key]
    resources.qm9_reference()  # starts reading QM9's SMILES (novelty badges, DFT values) in the background
    pages = [
        st.Page("views/generate.py", title="Generate", icon=":material/science:", default=True),
        st.Page("views/trajectory.py", title="Trajectory", icon=":material/animation:", url_path="trajectory"),
        st.Page("views/predict.py", title="Predict", icon=":material/query_stats:", url_path="predict"),
        st.Page("views/model.py", title="Model", icon=":material/description:", url_path="model"),
    ]
    navigation = st.navigation(pages)
    with st.sidebar:
        st.markdown("**UniGEM Studio**")
        st.caption("One diffusion model that generates 3D QM9 molecules and predicts their properties "
                   "(Feng et al., UniGEM, ICLR 2025; re-implementation).")
    navigation.run()


main()
