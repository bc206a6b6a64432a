"""Release safety: signatures (cosign), SBOMs, canary rollouts."""
