"""Why a request failed, in one line that says what to do.

The AWS CLI's stderr (read as text: its one output without types) and an
in-process botocore error (classified by its type and S3 error code) each become
one kind of failure, and one table of sentences says it: "<step> failed:
<reason>", the reason kept as a fact on the error for callers that show it in
their own words.
"""
import os
import re
import signal

from .engine.aws import botocore
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


def shown_endpoint(settings: Settings) -> str:
    return mask_secrets(settings.endpoint_url) if settings.endpoint_url else "AWS S3"


def doing(step: str, settings: Settings) -> str:
    url = mask_secrets(settings.s3_url)
    return {
        "push": f"Upload to {url}",
        "pull": f"Download from {url}",
        "list": f"Listing {url}",
        "delete": f"Deleting from {url}",
    }.get(step, f"Checking bucket {settings.bucket}")


def explain_failure(returncode: int, lines: list[str], settings: Settings, step: str) -> DatakitDataError:
    """One line saying why an AWS CLI run failed and what to do, from what it printed
    (``lines``, its stderr: the one input without types). ``step`` is "push" or "pull".
    The error's ``reason`` is the part after "failed: "."""
    if returncode == 130 or returncode < 0:
        # A negative code: the AWS CLI was ended by that signal (e.g. SIGKILL when short of memory).
        return Interrupted(step, -returncode if returncode < 0 else signal.SIGINT)
    if returncode == 2:
        skipped = [m for m in map(_SKIPPED.match, lines) if m]
        if skipped:
            # The lines were made printable as they were read.
            return SkippedFiles(step, [f"{_relative(m.group('path'))} ({m.group('why').lower()})" for m in skipped])
    text = "\n".join(lines)
    kind, facts = _kind_in_text(text)
    if kind is None:
        detail = _last_message(lines)
        reason = (f"the AWS CLI exited with code {returncode}{': ' + detail if detail else ''}. "
                  "Run again with the `debug` flag word for details.")
        return SyncError(f"{doing(step, settings)} failed: {reason}", reason=reason)
    return _explained(kind, facts, settings, step)


def explain_error(err: Exception, settings: Settings, step: str) -> DatakitDataError:
    """One line saying why an in-process request failed, from the botocore exception's
    type (and S3 error code). ``step``: "list", "delete", "pull" or "check"."""
    errors = botocore().exceptions
    kind, facts = _credential_kind(err, errors), {}
    if kind is not None:
        facts = {"detail": mask_secrets(str(err)), "missing": str(getattr(err, "kwargs", {}).get("cred_var", ""))}
    elif isinstance(err, errors.ClientError):
        code = str((err.response.get("Error") or {}).get("Code") or "")
        operation = getattr(err, "operation_name", "")
        kind = "assume role" if operation in ROLE_OPERATIONS and code not in EXPIRED else CODES.get(code)
        facts = {"code": code}
    elif isinstance(err, errors.ProfileNotFound):
        kind, facts = "profile missing", {"name": str(err.kwargs.get("profile", ""))}
    elif isinstance(err, errors.NoCredentialsError):
        kind = "no credentials"
    elif isinstance(err, errors.ProxyConnectionError):
        kind = "proxy"
    elif isinstance(err, errors.ReadTimeoutError):
        kind = "unanswered"
    elif isinstance(err, (errors.ConnectTimeoutError, errors.EndpointConnectionError)):
        kind = "unreachable"
    if kind is None:
        detail = _last_message(mask_secrets(str(err)).splitlines()) or "no reason given"
        reason = f"{detail}. Run `datakit --debug ...` for details."
        return SyncError(f"{doing(step, settings)} failed: {reason}", reason=reason)
    return _explained(kind, facts, settings, step)


#: botocore's credential errors (by class name: newer ones are missing from older
#: botocore), most specific first, by kind of failure.
CREDENTIAL_ERRORS = (
    ("UnauthorizedSSOTokenError", "sso"), ("SSOTokenLoadError", "sso"), ("SSOError", "sso"),
    ("LoginError", "login"), ("TokenRetrievalError", "sso"),
    ("PartialCredentialsError", "partial"), ("RefreshWithMFAUnsupportedError", "mfa"),
    ("InvalidConfigError", "aws config"),
)
#: STS and SSO operations that fetch a profile's credentials.
ROLE_OPERATIONS = ("AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "GetRoleCredentials")
#: Error codes of temporary credentials that have run out.
EXPIRED = ("ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "InvalidToken")


def _credential_kind(err: Exception, errors) -> str | None:
    """The kind of a botocore credential error, or None for any other error."""
    for name, kind in CREDENTIAL_ERRORS:
        cls = getattr(errors, name, None)
        if cls is not None and isinstance(err, cls):
            return kind
    cls = getattr(errors, "CredentialRetrievalError", None)
    if cls is not None and isinstance(err, cls):
        provider = str(getattr(err, "kwargs", {}).get("provider", ""))
        return "sso" if "sso" in provider.lower() else "process" if "process" in provider else "credentials"
    return None


#: S3 error codes we can explain, by kind of failure.
CODES = {
    **{code: "expired token" for code in EXPIRED},
    "NoSuchBucket": "no bucket",
    "InvalidAccessKeyId": "refused credentials", "SignatureDoesNotMatch": "refused credentials",
    "AccessDenied": "access denied", "AllAccessDisabled": "access denied", "Forbidden": "access denied",
    "403": "access denied",
}


#: What the AWS CLI prints for each credential failure (its stderr is text only).
CREDENTIAL_PHRASES = (
    ("Error loading SSO Token", "sso"), ("The SSO session associated with this profile", "sso"),
    ("Error when retrieving token from sso", "sso"), ("using 'aws login'", "login"),
    ("Error when retrieving credentials from custom-process", "process"),
    ("Partial credentials found in", "partial"), ("MFA token required", "mfa"),
    ("when calling the AssumeRole", "assume role"), ("when calling the GetRoleCredentials", "sso"),
)


def _kind_in_text(text: str) -> tuple[str | None, dict]:
    """The kind of failure the AWS CLI's words describe, and its facts."""
    missing = _PROFILE_MISSING.search(text)
    if missing:
        return "profile missing", {"name": missing.group("name")}
    for phrase, kind in CREDENTIAL_PHRASES:
        if phrase in text:
            return kind, {"detail": _last_message(text.splitlines())}
    match = re.search(r"An error occurred \((?P<code>[^)]+)\)", text)
    code = match.group("code") if match else ""
    if code in CODES:
        return CODES[code], {"code": code}
    if "Unable to locate credentials" in text:
        return "no credentials", {}
    if "Failed to connect to proxy URL" in text:
        return "proxy", {}
    # Both can appear (a server that hung, then went away): the later one says how things are now.
    unanswered = text.rfind("Read timeout on endpoint URL")
    unreachable = max(text.rfind("Could not connect to the endpoint URL"), text.rfind("Connect timeout"))
    if unanswered > unreachable:
        return "unanswered", {}
    if unreachable >= 0:
        return "unreachable", {}
    return None, {}


def _explained(kind: str, facts: dict, settings: Settings, step: str) -> DatakitDataError:
    """The one table of sentences: the error for a kind of failure."""
    where = shown_endpoint(settings)
    profile = printable(settings.profile_name or "default")
    reasons = {
        "profile missing": lambda: (
            f'AWS profile "{facts.get("name")}" was not found. Add it to '
            f"~/.aws/credentials or ~/.aws/config (or AWS_SHARED_CREDENTIALS_FILE / "
            f'AWS_CONFIG_FILE), or change "aws_user_profile" in {PROJECT_CONFIG}.'),
        "no bucket": lambda: (
            f'bucket "{settings.bucket}" does not exist on {where}. '
            f'Check "s3_bucket" in {PROJECT_CONFIG}, or create the bucket.'),
        "refused credentials": lambda: (
            f'the server refused the credentials of AWS profile "{settings.profile_name}" '
            f"({facts.get('code')}). Check that profile's keys, or set \"aws_user_profile\" in {PROJECT_CONFIG}."),
        "access denied": lambda: (
            f'access denied to bucket "{settings.bucket}" for AWS profile '
            f'"{settings.profile_name}". Ask the bucket owner for access, or use another profile.'),
        "sso": lambda: (
            f'the AWS SSO login of profile "{profile}" is missing or has expired. '
            f"Run `aws sso login --profile {profile}`, then run the command again."),
        "login": lambda: (
            f'the AWS login session of profile "{profile}" has expired. '
            f"Run `aws login --profile {profile}`, then run the command again."),
        "process": lambda: (
            f'the credential_process of profile "{profile}" failed. Run that command '
            "(in ~/.aws/config) by hand to see why, then run this one again."),
        "credentials": lambda: (
            f'the credentials of profile "{profile}" could not be fetched ({facts.get("detail")}). '
            "Check that profile in ~/.aws/config, then run the command again."),
        "partial": lambda: (
            f'profile "{profile}" has only part of its credentials (missing {facts.get("missing") or "a key"}). '
            "Complete it in ~/.aws/credentials or ~/.aws/config."),
        "mfa": lambda: (
            f'profile "{profile}" needs an MFA code, which datakit cannot ask for. Get temporary '
            "credentials first (your organisation's login tool, or `aws sts get-session-token`) and use that profile."),
        "assume role": lambda: (
            f'profile "{profile}" could not take on its role ({facts.get("code") or "refused"}). Check role_arn '
            "and source_profile in ~/.aws/config, and that the credentials they start from are current."),
        "expired token": lambda: (
            f'the temporary credentials of profile "{profile}" have expired ({facts.get("code")}). '
            f"Renew them (`aws sso login --profile {profile}`, or as your organisation issues them), then run again."),
        "aws config": lambda: (
            f"the AWS config cannot be used: {facts.get('detail')}. Fix ~/.aws/config (or the file AWS_CONFIG_FILE names)."),
        "no credentials": lambda: (
            "no AWS credentials found. Run `aws configure`, set AWS_ACCESS_KEY_ID and "
            f'AWS_SECRET_ACCESS_KEY, or name a profile in "aws_user_profile" in {PROJECT_CONFIG}.'),
        "proxy": lambda: (
            f"could not reach {where} through the proxy set in HTTPS_PROXY / HTTP_PROXY. "
            "Check the proxy, or add the S3 host to NO_PROXY."),
        "unanswered": lambda: (
            f"{where} accepted the connection but did not answer within {READ_TIMEOUT} s "
            f"({ATTEMPTS} attempts). Check that it is an S3 server and that it is working, "
            f'or "s3_endpoint_url" in {PROJECT_CONFIG}.'),
        "unreachable": lambda: (
            f'could not connect to {where}. Check your network, or "s3_endpoint_url" in {PROJECT_CONFIG}.'),
    }
    reason = reasons[kind]()
    cls = ConfigError if kind == "profile missing" else SyncError
    return cls(f"{doing(step, settings)} failed: {reason}", reason=reason, kind=kind)


def _last_message(lines: list[str]) -> str:
    for line in reversed(lines):
        line = line.strip()
        if line:
            return printable(line.removeprefix("fatal error: "))
    return ""


def _relative(path: str) -> str:
    return os.path.relpath(path) if os.path.isabs(path) else path
