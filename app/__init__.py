"""UniGEM Studio: the Streamlit app (`streamlit run app/main.py`). It calls only `unigem_core.api`."""
