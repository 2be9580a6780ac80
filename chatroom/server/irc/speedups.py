"""The IRC port's loops over bytes compiled in C (_speedups.c), or None where the install
found no compiler: then each caller runs the same loop in Python."""

try:
    from . import _speedups as compiled
except ImportError:
    compiled = None  # type: ignore[assignment]
