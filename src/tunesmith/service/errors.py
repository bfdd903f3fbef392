"""The hosted service's error shapes: HTTP status, ``x-amzn-ErrorType`` and ``{"message"}``.

botocore turns these into ``client.exceptions.<Name>``.
"""

from __future__ import annotations


class ServiceError(Exception):
    name = "InternalServerException"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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
