import logging

from portal.audit.redaction import REDACTED, RedactingFilter, redact
from portal.audit.services import audit_record

SAS = "sv=2024-11-04&ss=b&srt=co&sp=rwdlac&se=2026-12-01T00:00:00Z&sig=AbCdEf%2Bsecret%3D"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjMifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_sas_bearer_password_and_key_material_are_redacted():
    value = redact({
        "url": f"https://acct.blob.core.windows.net/backups?{SAS}",
        "header": f"Bearer {JWT}",
        "note": f"token inside text {JWT} and password=hunter22",
        "password": "hunter22",
        "sas_token": SAS,
        "jwk": {"kty": "RSA-HSM", "n": "public-modulus", "e": "AQAB", "d": "private", "p": "p1"},
        "nested": [{"client_secret": "s3cr3t"}],
        "pem": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF\n-----END PRIVATE KEY-----",
    })
    text = repr(value)
    for secret in ("AbCdEf", JWT, "hunter22", "private", "p1", "s3cr3t", "MIIEvQIBADANBgkqhkiG9w0BAQEF"):
        assert secret not in text
    assert value["jwk"]["n"] == "public-modulus"  # public parts stay readable
    assert value["url"].startswith("https://acct.blob.core.windows.net/backups?sv=")


def test_audit_rows_never_hold_secrets(db):
    event = audit_record(actor=None, action="backup.start", target=f"container?{SAS}",
                         detail={"token": SAS, "sas": SAS, "authorization": f"Bearer {JWT}"})
    event.refresh_from_db()
    stored = repr((event.target, event.detail))
    assert "AbCdEf" not in stored and JWT not in stored
    assert REDACTED in stored


def test_log_records_are_redacted(caplog):
    logger = logging.getLogger("portal.test")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="portal.test"):
            logger.info("calling %s with %s", f"https://x/c?{SAS}", f"Bearer {JWT}")
    finally:
        logger.filters.clear()
    assert "AbCdEf" not in caplog.text and JWT not in caplog.text
    assert REDACTED in caplog.text
