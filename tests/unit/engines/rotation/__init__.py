"""Unit tests of rotor.engines.rotation on the fakes."""
