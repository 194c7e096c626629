"""End-to-end scenarios a user runs after installing Rotor (see conftest.py for where they run)."""
