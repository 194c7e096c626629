"""Contract tests written once and run against every backend (the fake in unit, Vault in integration)."""
