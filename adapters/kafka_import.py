"""kafka-python, imported on first use rather than with the ledger's modules.

Importing ``kafka`` warns (``DeprecationWarning: read_text is deprecated. Use files()
instead``, from kafka-python's use of the legacy ``importlib.resources`` functions):
under ``python -W error`` the import failed. Those warnings are ignored while kafka
is first imported, nothing else.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

__all__ = ["kafka"]

#: The legacy importlib.resources functions' warning (read_text, open_text...).
_LEGACY_RESOURCES = r"\w+ is deprecated\. Use files\(\) instead"


@functools.cache
def kafka() -> Any:
    """The ``kafka`` package, with ``kafka.admin``, ``kafka.errors`` and ``kafka.structs``
    loaded."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_LEGACY_RESOURCES, category=DeprecationWarning)
        import kafka as package  # type: ignore[import-untyped]  # noqa: PLC0415
        import kafka.admin  # type: ignore[import-untyped]  # noqa: PLC0415
        import kafka.errors  # type: ignore[import-untyped]  # noqa: PLC0415
        import kafka.structs  # type: ignore[import-untyped]  # noqa: PLC0415
    return package
