"""One redaction function for audit rows and logs: no SAS, bearer token, password or key
material leaves a request in clear text.
"""
import logging
import re

REDACTED = "[redacted]"

# Keys whose values are secrets whatever they look like. JWK private members
# (d, p, q, dp, dq, qi, k) count only inside a JWK-like dict, see _is_jwk.
_SECRET_KEYS = re.compile(
    r"(pass(word|phrase)?|secret|token|sas|signature|sig|authorization|cookie|credential"
    r"|private|key_material|key_hsm|wrapped_key|blob|security_domain)$",
    re.IGNORECASE,
)
_JWK_PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "k", "key_hsm"}

_PATTERNS = [
    # Authorization headers and bare bearer tokens.
    (re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    # JWTs anywhere (header.payload.signature, base64url).
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # SAS query strings: the signature is the secret; drop it and the rest of the query.
    (re.compile(r"(?i)([?&]|\b)sig=[^&\s\"']+"), r"\1sig=" + REDACTED),
    # key=value style secrets in free text.
    (re.compile(r"(?i)\b(password|passwd|secret|client_secret|accountkey)\s*[=:]\s*[^\s&;,\"']+"),
     r"\1=" + REDACTED),
    # PEM private keys.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     REDACTED),
]


def _is_jwk(value: dict) -> bool:
    return "kty" in value or "kid" in value or "n" in value or "crv" in value


def redact(value):
    """A copy of value (str, dict, list, scalar) with secrets replaced by '[redacted]'."""
    if isinstance(value, str):
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        jwk = _is_jwk(value)
        out = {}
        for key, item in value.items():
            key_text = str(key)
            if _SECRET_KEYS.search(key_text) or (jwk and key_text in _JWK_PRIVATE):
                out[key] = REDACTED if item not in (None, "", [], {}) else item
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the formatted message (and drops the raw args)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the log line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
