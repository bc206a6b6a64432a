"""bgeimg: small, correct, versioned container images for BGE embedding and reranker models."""

__version__ = "0.1.0"
