"""In-memory fakes behind Rotor's protocols, for fast engine unit tests (never for integration tests)."""
