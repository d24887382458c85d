"""The backup bucket: a boto3 S3 client and the few calls backups make.

Every function here is synchronous and blocking: backups run their whole pipeline in one
worker thread (``trio.to_thread.run_sync``), off the request path, so boto3 and s3transfer
are used as they are (s3transfer starts its own upload threads inside that call).

Botocore errors never leave this module: a missing bucket, refused credentials, an endpoint
that does not answer and every other S3 failure become :class:`~store.errors.StorageError`
with one line for operators, chained to the original.

Memory: an upload reads the stream in parts of ``part_size`` bytes and keeps at most
``concurrency`` of them in memory (s3transfer's ``max_in_memory_upload_chunks``), so a dump
of any size uploads in ``part_size x concurrency`` bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, cast

import attrs
import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from store.errors import StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "Readable",
    "S3Object",
    "S3Settings",
    "check_bucket",
    "delete_objects",
    "get_json",
    "list_objects",
    "make_client",
    "put_json",
    "read_object",
    "upload_stream",
]

MIB = 1024 * 1024
# Why 16 MiB: S3 allows at most 10,000 parts, so 16 MiB parts carry a dump of up to 156 GiB,
# and 4 of them in flight keep memory at 64 MiB.
DEFAULT_PART_SIZE = 16 * MIB
DEFAULT_CONCURRENCY = 4
# S3's smallest part (except the last).
MIN_PART_SIZE = 5 * MIB
# Why 64 KiB: reading a download in chunks of this size keeps the pipe to pg_restore busy
# without holding more than a few chunks.
READ_CHUNK = 64 * 1024
# Error codes that mean "these credentials are not accepted here".
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "403",
    }
)


@attrs.frozen
class S3Settings:
    """Where backups go and how to talk to the store.

    Attributes:
        bucket: The bucket (it must exist; backups never create it).
        prefix: Key prefix of every object backups write, e.g. ``smartpip/``.
        region: The bucket's region (None: boto3's default chain).
        endpoint_url: An S3-compatible endpoint (None: AWS).
        access_key_id: Explicit credentials (None: boto3's standard chain: environment,
            shared files, instance or task role).
        secret_access_key: Its secret.
        sse: Server-side encryption to request: ``AES256`` (SSE-S3), ``aws:kms`` (SSE-KMS) or
            ``none`` (for stores that refuse the header).
        kms_key_id: The KMS key for ``aws:kms`` (None: the bucket's default key).
        checksums: ``when_supported`` (boto3's default: a CRC32 on every upload, checked on
            download) or ``when_required`` (for S3-compatible stores that refuse it).
        part_size: Multipart part size in bytes (at least 5 MiB).
        concurrency: Parts uploaded (and held in memory) at once.
        connect_timeout: Seconds to connect to the endpoint.
        read_timeout: Seconds to wait for an answer.
    """

    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = attrs.field(default=None, repr=False)
    sse: str = "AES256"
    kms_key_id: str | None = None
    checksums: Literal["when_supported", "when_required"] = "when_supported"
    part_size: int = DEFAULT_PART_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def encryption_args(self) -> dict[str, str]:
        """The ``ExtraArgs`` that request server-side encryption on a write."""
        if self.sse == "none":
            return {}
        args = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args


class Readable(Protocol):
    """What an upload reads from: ``read(size)`` returning b"" at the end."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes."""
        ...


@attrs.frozen
class S3Object:
    """One listed object: its key and size in bytes."""

    key: str
    size: int


def make_client(settings: S3Settings) -> S3Client:
    """A boto3 S3 client for ``settings`` (no request is made)."""
    config = botocore.config.Config(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"max_attempts": 5, "mode": "standard"},
        request_checksum_calculation=settings.checksums,
        response_checksum_validation=settings.checksums,
        # Path style works with AWS and with every S3-compatible store on any host name.
        s3={"addressing_style": "path"} if settings.endpoint_url else {},
    )
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        region_name=settings.region,
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


def _fail(error: Exception, what: str, settings: S3Settings) -> StorageError:
    """A one-line :class:`StorageError` for a botocore error."""
    where = f"s3://{settings.bucket}"
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return StorageError(f"{what}: no AWS credentials found (environment, files or role)")
    if isinstance(error, botocore.exceptions.ClientError):
        err = error.response.get("Error", {})
        code = str(err.get("Code", ""))
        if code == "NoSuchBucket":
            return StorageError(f"{what}: the bucket {where} does not exist")
        if code in _AUTH_CODES:
            return StorageError(
                f"{what}: the credentials were refused for {where} ({code}): check the "
                "access key, secret and IAM policy"
            )
        return StorageError(f"{what}: {code or 'error'}: {err.get('Message', error)}")
    if isinstance(error, botocore.exceptions.EndpointConnectionError):
        return StorageError(f"{what}: cannot reach the S3 endpoint: {error}")
    return StorageError(f"{what}: {type(error).__name__}: {error}")


_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def check_bucket(client: S3Client, settings: S3Settings) -> None:
    """Make sure the bucket exists and these credentials may use it.

    Raises:
        StorageError: it does not, or they may not, or S3 cannot be reached.
    """
    try:
        client.list_objects_v2(Bucket=settings.bucket, Prefix=settings.prefix, MaxKeys=1)
    except _BOTO_ERRORS as error:
        raise _fail(error, "checking the bucket", settings) from error


def upload_stream(
    client: S3Client,
    settings: S3Settings,
    key: str,
    stream: Readable,
    *,
    content_type: str = "application/octet-stream",
) -> None:
    """Upload everything ``stream`` yields to ``key``, as a multipart upload when large.

    When ``stream.read`` raises, s3transfer aborts the multipart upload and no object is
    created (a single-part upload is never sent): the exception propagates unchanged.

    Raises:
        StorageError: S3 refused or failed the upload.
    """
    transfer = TransferConfig(
        multipart_threshold=settings.part_size,
        multipart_chunksize=settings.part_size,
        max_concurrency=settings.concurrency,
        # The default may pick the CRT client when installed; its memory use is its own.
        preferred_transfer_client="classic",
    )
    # Not exposed by boto3's constructor: the bound on parts read ahead into memory.
    transfer.max_in_memory_upload_chunks = settings.concurrency
    extra = {"ContentType": content_type, **settings.encryption_args()}
    try:
        client.upload_fileobj(
            cast(IO[bytes], stream), settings.bucket, key, ExtraArgs=extra, Config=transfer
        )
    except _BOTO_ERRORS as error:
        raise _fail(error, f"uploading {key}", settings) from error
    except boto3.exceptions.S3UploadFailedError as error:
        cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
        raise _fail(cause, f"uploading {key}", settings) from error


def put_json(client: S3Client, settings: S3Settings, key: str, value: object) -> None:
    """Write a small JSON object.

    Raises:
        StorageError: S3 refused or failed the write.
    """
    body = json.dumps(value, indent=2, sort_keys=True).encode()
    try:
        client.put_object(
            Bucket=settings.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            **settings.encryption_args(),  # type: ignore[arg-type]
        )
    except _BOTO_ERRORS as error:
        raise _fail(error, f"writing {key}", settings) from error


def get_json(client: S3Client, settings: S3Settings, key: str) -> Any:
    """Read a small JSON object (None when it does not exist).

    Raises:
        StorageError: S3 failed, or the object is not JSON.
    """
    try:
        reply = client.get_object(Bucket=settings.bucket, Key=key)
        body = reply["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    except _BOTO_ERRORS as error:
        raise _fail(error, f"reading {key}", settings) from error
    try:
        return json.loads(body)
    except ValueError as error:
        raise StorageError(f"reading {key}: not JSON: {error}") from error


def read_object(
    client: S3Client, settings: S3Settings, key: str, *, cancelled: Callable[[], bool]
) -> Iterator[bytes]:
    """The object's bytes, streamed in chunks (one GET; nothing held but a chunk).

    Args:
        client: The client.
        settings: The settings.
        key: The object.
        cancelled: Checked between chunks; when true, the download stops (StorageError).

    Raises:
        StorageError: the object does not exist, or S3 failed mid-stream.
    """
    try:
        reply = client.get_object(Bucket=settings.bucket, Key=key)
        body = reply["Body"]
        try:
            for chunk in body.iter_chunks(READ_CHUNK):
                if cancelled():
                    raise StorageError(f"reading {key}: cancelled")
                yield chunk
        finally:
            body.close()
    except client.exceptions.NoSuchKey as error:
        raise StorageError(f"reading {key}: no such backup object") from error
    except _BOTO_ERRORS as error:
        raise _fail(error, f"reading {key}", settings) from error


def list_objects(client: S3Client, settings: S3Settings) -> list[S3Object]:
    """Every object under the prefix, in key order.

    Raises:
        StorageError: S3 failed.
    """
    out: list[S3Object] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.bucket, Prefix=settings.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                out.append(S3Object(key=item["Key"], size=int(item["Size"])))
    except _BOTO_ERRORS as error:
        raise _fail(error, "listing backups", settings) from error
    return sorted(out, key=lambda obj: obj.key)


def delete_objects(client: S3Client, settings: S3Settings, keys: list[str]) -> None:
    """Delete ``keys`` (in batches of 1,000, S3's limit).

    Raises:
        StorageError: S3 failed, or refused to delete one of them.
    """
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        try:
            reply = client.delete_objects(
                Bucket=settings.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
        except _BOTO_ERRORS as error:
            raise _fail(error, "deleting old backups", settings) from error
        errors = reply.get("Errors", [])
        if errors:
            first = errors[0]
            raise StorageError(
                f"deleting {first.get('Key')}: {first.get('Code')}: {first.get('Message')}"
            )
