"""Helpers shared by the CAM tests (a module of its own: every test folder has a conftest)."""

# Fewer noise samples / integration steps than the defaults (35 / 10 / 4 model passes per
# channel or image), where a test loops over every method only to check shapes and ranges.
FEW_SAMPLES = {
    "sscam": {"num_samples": 1},
    "iscam": {"num_samples": 1},
    "smoothgradcam++": {"num_samples": 2},
}


def few_samples(method: str) -> dict:
    """``compute_cam`` keyword arguments that keep a sampling method cheap (else none)."""
    return FEW_SAMPLES.get(method, {})
