"""masking.py: credentials in URLs never shown."""
import pytest


@pytest.mark.parametrize("url, secret", [
    ("https://key:secret@s3.example", "secret"),
    ("https://key:p@ss@word@s3.example/x", "p@ss@word"),
    ("http://u:pa/ss@host:9", "pa/ss"),
    ("http://u:sp%40ce@host", "sp%40ce"),
])
def test_masking_hides_configured_credentials_whatever_they_hold(url, secret):
    from datakit_data import masking

    masking.remember(url)
    shown = masking.mask_secrets(f"could not connect to {url}: {secret}")
    assert secret not in shown and shown.startswith("could not connect to http")
