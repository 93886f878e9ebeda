"""Credentials written inside URLs: never printed, logged or sent anywhere.

An ``s3_endpoint_url`` such as ``https://analyst:secret@s3.example.org`` holds a
password. S3 requests are authenticated with the AWS profile, not with it, so it
is left out of every request (where an HTTP proxy would otherwise receive it, since
clients skip NO_PROXY for such URLs), and masked in every line we print or log.
"""
import logging
import re
import urllib.parse

# Everything up to the last "@" before the host: a password may hold a raw "@".
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s\"'<>]+@")
# The credentials of a configured URL, found by its last "@", whatever they hold.
_CONFIGURED = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?P<userinfo>.+)@[^@]*$", re.DOTALL)

#: Credentials seen in configured URLs, masked wherever they appear.
_known: set[str] = set()


def remember(url: object) -> None:
    """Note the credentials inside a configured URL, so that they are masked everywhere
    (also when the URL is malformed: no scheme, spaces around it)."""
    if not isinstance(url, str) or "@" not in url:
        return
    url = url.strip()
    match = _CONFIGURED.match(url)
    userinfo = match.group("userinfo") if match else url.rsplit("@", 1)[0].split("://", 1)[-1]
    for secret in (userinfo, userinfo.partition(":")[2]):
        for form in (secret, urllib.parse.unquote(secret), urllib.parse.quote(secret, safe="")):
            if len(form) >= 3:
                _known.add(form)


def mask_secrets(text: str) -> str:
    """Hide credentials written inside URLs (http://user:secret@host)."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", str(text))
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def without_credentials(url: str | None) -> str | None:
    """The URL to send requests to: any credentials written in it left out."""
    if not url:
        return url
    match = _CONFIGURED.match(url)
    if not match:
        return url
    scheme = url.split("://", 1)[0]
    return f"{scheme}://{url[match.end('userinfo') + 1:]}"


class _MaskingFormatter(logging.Formatter):
    """Formats as before, then masks credentials: tracebacks included."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(self.inner.format(record))


def mask_logging() -> None:
    """Mask credentials in everything the log handlers write (`--debug` tracebacks too)."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _MaskingFormatter):
            handler.setFormatter(_MaskingFormatter(handler.formatter or logging.Formatter()))
