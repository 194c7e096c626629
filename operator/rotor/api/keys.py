"""Rotor's vocabulary in one place: label and annotation keys, condition types and reasons.

Watches, selectors, the webhook, status writers and docs all read them from here, so they agree
(as vault-secrets-operator keeps its reasons in internal/consts/reasons.go).
"""

from __future__ import annotations

from typing import Final

# -- labels and annotations on Secrets Rotor writes ----------------------------------------------
MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "rotor"
SOURCE_LABEL: Final = "rotor.dev/secret-source"
DATA_HMAC: Final = "rotor.dev/data-hmac"
SOURCE_VERSION: Final = "rotor.dev/source-version"
MANAGED_KEYS: Final = "rotor.dev/managed-keys"
OWNER_LABEL: Final = "rotor.dev/owner"  # who owns a secret, for the inventory
# On a Secret Rotor created: the UID of the SecretSource it was created for (ownership is this UID or
# an owner reference, never a label value, which anyone who may label a Secret can forge).
SOURCE_UID: Final = "rotor.dev/source-uid"
# On a Merge target: the labels Rotor added (comma-separated), so releasing it removes only those.
ADDED_LABELS: Final = "rotor.dev/added-labels"
# On a source Secret: the namespaces that may read it through the kubernetes provider ("*": all).
ALLOWED_NAMESPACES: Final = "rotor.dev/allowed-namespaces"
# On an existing Secret, set by its owner: the one SecretSource (by name) that may merge keys into it.
ALLOW_SOURCE: Final = "rotor.dev/allow-source"
# Label and annotation keys under this prefix are Rotor's: spec.target may not set them.
RESERVED_PREFIX: Final = "rotor.dev/"

# -- annotations on Rotor's own objects ------------------------------------------------------------
REFRESH_NOW: Final = "rotor.dev/refresh-now"  # a new value on a SecretSource: read the backend now
ROTATE_NOW: Final = "rotor.dev/rotate-now"  # a new value on a RotationPolicy: rotate now
LEAK_INCIDENT_LABEL: Final = "rotor.dev/leak-incident"  # on an emergency RotationPolicy: its incident
FINALIZER: Final = "rotor.dev/finalizer"  # Kopf's, on objects with Kopf delete handlers
# Rotor's own on SecretSources (no Kopf change handlers there); distinct from Kopf's, which Kopf
# removes from any object of a kind that has no handler needing it.
CLEANUP_FINALIZER: Final = "rotor.dev/secret-cleanup"

# -- workloads and pods ------------------------------------------------------------------------------
INJECT_LABEL: Final = "rotor.dev/inject"  # the webhook's objectSelector: no other pod ever reaches Rotor
SECRETS: Final = "rotor.dev/secrets"
INJECT_AS: Final = "rotor.dev/inject-as"
CONTAINERS: Final = "rotor.dev/containers"
ENV_PREFIX: Final = "rotor.dev/env-prefix"
INJECTED: Final = "rotor.dev/injected"  # written on the pod: which sources were injected, and how
RELOAD: Final = "rotor.dev/reload"  # "true": reload on every Secret the template references; "never": none
RELOAD_ON: Final = "rotor.dev/reload-on"  # "a,b": reload when these Secrets change
SECRETS_HASH: Final = "rotor.dev/secrets-hash"
APPLIED: Final = "rotor.dev/applied-secrets"

# -- condition types -----------------------------------------------------------------------------------
READY: Final = "Ready"
LEAKED_VALUE_REFUSED: Final = "LeakedValueRefused"
CHANGE_FEED: Final = "ChangeFeed"  # SecretSource: its Vault connection's change feed (FeedHealthy, FeedDown)

# -- reasons: SecretSource (and errors any engine reports) -----------------------------------------------
SYNCED: Final = "Synced"
BACKEND_UNAVAILABLE: Final = "BackendUnavailable"
PERMISSION_DENIED: Final = "PermissionDenied"
NOT_FOUND: Final = "NotFound"
INVALID_SPEC: Final = "InvalidSpec"
TEMPLATE_ERROR: Final = "TemplateError"
CONFLICT: Final = "Conflict"
DENYLISTED: Final = "Denylisted"
KUBERNETES_ERROR: Final = "KubernetesError"
FEED_HEALTHY: Final = "FeedHealthy"
FEED_DOWN: Final = "FeedDown"

# -- reasons: RotationPolicy ----------------------------------------------------------------------------
SOURCE_NOT_FOUND: Final = "SourceNotFound"
IDLE: Final = "Idle"
ROTATED: Final = "Rotated"
ROLLED_BACK: Final = "RolledBack"
ROTATION_FAILED: Final = "RotationFailed"

# -- reasons: LeakIncident ------------------------------------------------------------------------------
IN_PROGRESS: Final = "InProgress"
WAITING: Final = "Waiting"
UNSUPPORTED: Final = "Unsupported"
CANNOT_FINGERPRINT: Final = "CannotFingerprint"
NO_AUDIT_LOG: Final = "NoAuditLog"
AUDIT_LOG_UNREADABLE: Final = "AuditLogUnreadable"
STILL_VALID: Final = "StillValid"
ALREADY_DESTROYED: Final = "AlreadyDestroyed"
DELIVERING: Final = "Delivering"
RESOLVED: Final = "Resolved"
PREVENTED: Final = "Prevented"
# A leaked value too short or common to identify one credential is not denylisted (condition type and reason).
DENYLIST_REFUSED: Final = "DenylistRefused"
NOT_IDENTIFYING: Final = "NotIdentifying"
# On a LeakIncident, written by Rotor's admission webhook only: the authenticated user who reported /
# resolved it, signed with the HMAC key (whatever a client sets there is overwritten or not believed).
REPORTED_BY: Final = "rotor.dev/reported-by"
RESOLVED_BY: Final = "rotor.dev/resolved-by"

# -- reason: any kind --------------------------------------------------------------------------------------
# Ready=False when Rotor failed unexpectedly on an object (a bug, not the object's fault): the message names
# the object and the error's type, never its text (which might quote a value); the operator log has the rest.
INTERNAL_ERROR: Final = "InternalError"
