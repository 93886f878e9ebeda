"""Why a request failed, in one line that says what to do.

The AWS CLI's stderr (or an in-process botocore error, with its S3 error code)
becomes one error: "<step> failed: <reason>", the reason kept as a fact on the
error for callers that show it in their own words.
"""
import os
import re
import signal

from .exceptions import ConfigError, DatakitDataError, Interrupted, SkippedFiles, SyncError
from .layout import PROJECT_CONFIG
from .masking import mask_secrets
from .names import printable
from .settings import ATTEMPTS, READ_TIMEOUT, Settings

_SKIPPED = re.compile(r"^warning: Skipping file (?P<path>.+?)\. (?P<why>[^.]+)\.?\s*$")
_PROFILE_MISSING = re.compile(r"The config profile \((?P<name>.*)\) could not be found")


def withheld(line: str) -> bool:
    """Lines the one-line explanation replaces rather than repeats."""
    return line.startswith("fatal error:") or bool(_PROFILE_MISSING.search(line))


def _where(settings: Settings) -> str:
    return mask_secrets(settings.endpoint_url) if settings.endpoint_url else "AWS S3"


def explain_failure(returncode: int, lines: list[str], settings: Settings, direction: str, code: str | None = None,
                    cli: bool = True) -> DatakitDataError:
    """One line saying why a request failed and what to do.

    ``lines`` is what the AWS CLI printed (or an in-process error's text, with
    ``cli`` False); ``code`` is the S3 error code when the caller has it, else it is
    read from the text. The error's ``reason`` is the part after "failed: ".
    """
    text = "\n".join(lines)
    url = mask_secrets(settings.s3_url)
    verb = {
        "push": f"Upload to {url}",
        "pull": f"Download from {url}",
        "list": f"Listing {url}",
        "delete": f"Deleting from {url}",
    }.get(direction, f"Checking bucket {settings.bucket}")
    if returncode == 130 or returncode < 0:
        # A negative code: the AWS CLI was ended by that signal (e.g. SIGKILL when short of memory).
        return Interrupted(direction, -returncode if returncode < 0 else signal.SIGINT)
    if returncode == 2:
        skipped = [m for m in map(_SKIPPED.match, lines) if m]
        if skipped:
            # The lines were made printable as they were read.
            return SkippedFiles(direction, [f"{_relative(m.group('path'))} ({m.group('why').lower()})" for m in skipped])
    kind, reason = _diagnose(code or _error_code(text), text, settings)
    if reason is None:
        detail = _last_message(lines)
        if cli:
            reason = (f"the AWS CLI exited with code {returncode}{': ' + detail if detail else ''}. "
                      "Run again with the `debug` flag word for details.")
        else:
            reason = f"{detail or 'no reason given'}. Run `datakit --debug ...` for details."
    return kind(f"{verb} failed: {reason}", reason=reason)


def _diagnose(code: str | None, text: str, settings: Settings) -> tuple[type, str | None]:
    """(error class, reason) for the failures we can explain, else (SyncError, None)."""
    missing = _PROFILE_MISSING.search(text)
    if missing:
        return ConfigError, (
            f'AWS profile "{missing.group("name")}" was not found. Add it to '
            f"~/.aws/credentials or ~/.aws/config (or AWS_SHARED_CREDENTIALS_FILE / "
            f'AWS_CONFIG_FILE), or change "aws_user_profile" in {PROJECT_CONFIG}.'
        )
    where = _where(settings)
    if code == "NoSuchBucket":
        return SyncError, (
            f'bucket "{settings.bucket}" does not exist on {where}. '
            f'Check "s3_bucket" in {PROJECT_CONFIG}, or create the bucket.'
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return SyncError, (
            f'the server refused the credentials of AWS profile "{settings.profile_name}" '
            f"({code}). Check that profile's keys, or set \"aws_user_profile\" in {PROJECT_CONFIG}."
        )
    if code in ("AccessDenied", "AllAccessDisabled", "Forbidden", "403"):
        return SyncError, (
            f'access denied to bucket "{settings.bucket}" for AWS profile '
            f'"{settings.profile_name}". Ask the bucket owner for access, or use another profile.'
        )
    if "Unable to locate credentials" in text:
        return SyncError, (
            "no AWS credentials found. Run `aws configure`, set AWS_ACCESS_KEY_ID and "
            f'AWS_SECRET_ACCESS_KEY, or name a profile in "aws_user_profile" in {PROJECT_CONFIG}.'
        )
    if "Failed to connect to proxy URL" in text:
        return SyncError, (
            f"could not reach {where} through the proxy set in HTTPS_PROXY / HTTP_PROXY. "
            "Check the proxy, or add the S3 host to NO_PROXY."
        )
    # Both can appear (a server that hung, then went away): the later one says how things are now.
    unanswered = text.rfind("Read timeout on endpoint URL")
    unreachable = max(text.rfind("Could not connect to the endpoint URL"), text.rfind("Connect timeout"))
    if unanswered > unreachable:
        return SyncError, (
            f"{where} accepted the connection but did not answer within {READ_TIMEOUT} s "
            f"({ATTEMPTS} attempts). Check that it is an S3 server and that it is working, "
            f'or "s3_endpoint_url" in {PROJECT_CONFIG}.'
        )
    if unreachable >= 0:
        return SyncError, f'could not connect to {where}. Check your network, or "s3_endpoint_url" in {PROJECT_CONFIG}.'
    return SyncError, None


def _error_code(text: str) -> str | None:
    match = re.search(r"An error occurred \((?P<code>[^)]+)\)", text)
    return match.group("code") if match else None


def _last_message(lines: list[str]) -> str:
    for line in reversed(lines):
        line = line.strip()
        if line:
            return printable(line.removeprefix("fatal error: "))
    return ""


def _relative(path: str) -> str:
    return os.path.relpath(path) if os.path.isabs(path) else path
