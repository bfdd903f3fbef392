"""The hosted service's error vocabulary: Bedrock's exception names with their HTTP statuses.

Raised by the job service, inference and the routes alike; the HTTP layer
(:mod:`tunesmith.api.errors`) turns each into a response with ``x-amzn-ErrorType``, which
botocore raises as ``client.exceptions.<Name>``. Dependency-free, so any layer may raise them.
"""

from __future__ import annotations


class ServiceError(Exception):
    name = "InternalServerException"
    status = 500

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        # OpenAI's error fields: the request field at fault, and a code such as ``model_not_found``.
        self.message, self.param, self.code = message, param, code


class ValidationException(ServiceError):
    name, status = "ValidationException", 400


class ConflictException(ServiceError):
    name, status = "ConflictException", 400


class ResourceNotFoundException(ServiceError):
    name, status = "ResourceNotFoundException", 404


class AccessDeniedException(ServiceError):
    name, status = "AccessDeniedException", 403


class ServiceQuotaExceededException(ServiceError):
    name, status = "ServiceQuotaExceededException", 400


class AuthenticationException(ServiceError):
    """A missing or wrong API key on the OpenAI-compatible routes (OpenAI answers 401, not 403)."""

    name, status = "AuthenticationException", 401


class ServiceUnavailableException(ServiceError):
    """Something the request needs cannot be reached now (a model's files on S3); trying again may work."""

    name, status = "ServiceUnavailableException", 503


class UnknownOperationException(ServiceError):
    name, status = "UnknownOperationException", 404


class RequestTooLargeException(ServiceError):
    """Not a Bedrock name; boto3 raises it as a ClientError with this code."""

    name, status = "ValidationException", 413
