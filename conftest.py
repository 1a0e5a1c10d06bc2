"""Collection rules for the whole repository."""

import importlib.util

# The adapters' doctests need their framework; without it (torch and jax are optional
# extras) they are not collected, as tests/test_torch.py and tests/test_jax.py skip.
collect_ignore = [
    f"src/gradcheck/{name}.py"
    for name in ("torch", "jax")
    if importlib.util.find_spec(name) is None
]
