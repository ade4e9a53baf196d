"""The MoE-FM trajectory explorer: a Streamlit app over the :mod:`moefm` library.

Run it with ``streamlit run app/explorer.py``. ``python -m app.pretrain`` regenerates the
checkpoints in ``app/checkpoints/`` that make the first view instant.
"""
