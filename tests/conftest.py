"""Shared test configuration: the package under operator/ is importable as `rotor`."""
