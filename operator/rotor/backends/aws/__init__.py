"""AWS Secrets Manager and SSM Parameter Store, read as the workload's own IAM role (IRSA).

The only package that imports boto3/botocore. `backend` reads; `identity` turns a ServiceAccount
token into a role session; `connection` holds a named connection's clients; `values` is the pure part.
"""

from rotor.backends.aws.backend import AwsBackend

__all__ = ["AwsBackend"]
