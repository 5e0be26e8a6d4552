"""Secrets that must never reach a log line in clear text, and what each becomes."""
CANARIES = (
    "client_secret=canary-client-secret-1f2e3d",
    "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5",
    "https://backups.blob.core.windows.net/hsm?sv=2022-11-02&sp=rw&sig=canarySASsig0123456789",
)
# The part of each canary that is the secret itself.
SECRET_PARTS = ("canary-client-secret-1f2e3d", "eyJhbGciOiJSUzI1NiJ9", "canarySASsig0123456789")
