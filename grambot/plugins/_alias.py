"""One old module name standing for its new module, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make `old` the module `new` itself, so old imports get the very same objects."""
    warnings.warn(
        f"{old} moved to {new} and this alias goes in grambot 0.3; import from grambot instead",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
