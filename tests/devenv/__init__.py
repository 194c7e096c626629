"""The local control plane for development and tests: real etcd, kube-apiserver, Vault, PostgreSQL.

Nothing here is used by the operator at run time; it exists so that `make run` and `make test`
exercise Rotor against real servers on loopback ports.
"""

from tests.devenv.stack import Stack, StackInfo

__all__ = ["Stack", "StackInfo"]
