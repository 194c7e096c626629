"""spec.aws of a SecretSource: a secret in AWS Secrets Manager or SSM Parameter Store, read as an IAM role
the SecretSource's ServiceAccount may assume (IRSA, done by Rotor for the workload)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rotor.api.common import DNSLabel, Model, cel, validations

ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$"
SECRET_ID_PATTERN = r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:)?[A-Za-z0-9/_+=.@!-]+$"
PARAMETER_NAME_PATTERN = r"^(arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter)?/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
PARAMETER_PATH_PATTERN = r"^/([A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]*$"


class SecretsManagerRef(Model):
    """A secret of AWS Secrets Manager, one version of it (AWSCURRENT unless pinned)."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel("!(has(self.versionStage) && has(self.versionId))", "set versionStage or versionId, not both",
                ".versionId"),
        )
    }

    secret_id: str = Field(min_length=1, max_length=2048, pattern=SECRET_ID_PATTERN,
                           description="Name or ARN of the secret.")
    version_stage: str | None = Field(default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_+=,.@-]+$",
                                      description="Staging label of the version to read (default: AWSCURRENT).")
    version_id: str | None = Field(default=None, min_length=32, max_length=64, pattern=r"^[A-Za-z0-9-]+$",
                                   description="Pin one version by its id.")
    format: Literal["JSON", "Raw"] = Field(
        default="JSON", description="JSON: each top-level key of the secret's JSON object is a property (strings "
        "as they are, other values as JSON); Raw: the whole secret, string or binary, is the property `value`.")


class ParameterStoreRef(Model):
    """Parameters of AWS Systems Manager Parameter Store; SecureStrings are decrypted."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel("has(self.name) != has(self.path)", "set exactly one of name and path"),
            cel("!has(self.version) || has(self.name)", "version pins need name (a single parameter)", ".version"),
        )
    }

    name: str | None = Field(default=None, min_length=1, max_length=2048, pattern=PARAMETER_NAME_PATTERN,
                             description="One parameter (name or ARN); its property is the last segment of the "
                             "name (/prod/app/db-password gives db-password).")
    path: str | None = Field(default=None, min_length=1, max_length=2048, pattern=PARAMETER_PATH_PATTERN,
                             description="Every parameter under this path, recursively; their properties are the "
                             "names below the path (/prod/app/ with /prod/app/db/user gives db/user: map nested "
                             "names to Secret keys with spec.data).")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="Pin one version of the parameter named by name.")


class AwsSource(Model):
    """A secret in AWS, read through a named connection from the operator's config, as an IAM role."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            cel("has(self.secretsManager) != has(self.parameterStore)",
                "set exactly one of secretsManager and parameterStore"),
        )
    }

    connection: DNSLabel = Field(
        default="default",
        description="Name of an AWS connection in the operator's configuration (region and endpoints; not an "
        "address: tenants cannot point Rotor at their own servers).",
    )
    role_arn: str = Field(min_length=20, max_length=2048, pattern=ROLE_ARN_PATTERN,
                          description="IAM role the ServiceAccount's token is exchanged for "
                          "(AssumeRoleWithWebIdentity); the connection's roleArnPattern bounds which roles a "
                          "namespace may name.")
    secrets_manager: SecretsManagerRef | None = None
    parameter_store: ParameterStoreRef | None = None
