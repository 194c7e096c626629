"""Label and annotation keys Rotor writes: one place, so watches and selectors agree."""

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "rotor"
SOURCE_LABEL = "rotor.dev/secret-source"
DATA_HMAC = "rotor.dev/data-hmac"
SOURCE_VERSION = "rotor.dev/source-version"
MANAGED_KEYS = "rotor.dev/managed-keys"
ALLOWED_NAMESPACES = "rotor.dev/allowed-namespaces"
REFRESH_NOW = "rotor.dev/refresh-now"  # a new value on a SecretSource: read the backend now
FINALIZER = "rotor.dev/finalizer"  # Kopf's, on objects with Kopf delete handlers
# Rotor's own on SecretSources (no Kopf change handlers there); distinct from Kopf's, which Kopf
# removes from any object of a kind that has no handler needing it.
CLEANUP_FINALIZER = "rotor.dev/secret-cleanup"
