"""The BGE serving app copied into every image built by bgeimg."""
