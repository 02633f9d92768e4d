"""MVA Explorer engine: multi-value alignment by composing LoRA value vectors. Never imports streamlit."""

__version__ = "0.1.0"
