"""Every setting of the portal, read from the environment with a safe embedded default.

Production differs from `make run` only in environment values (see the README's table).
"""
import os
import secrets
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from portal.settings.env import env_bool, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))


def _embedded_secret_key() -> str:
    """A random key kept in VAR_DIR, so sessions survive restarts of the embedded portal."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(64))
    return path.read_text().strip()


SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or _embedded_secret_key()
DEBUG = env_bool("PORTAL_DEBUG", False)
ALLOWED_HOSTS = env_list("PORTAL_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("PORTAL_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # First, so that its drf_create_token (hashed tokens) wins over DRF's.
    "portal.accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "portal.audit",
    "portal.jobs",
    "portal.gateway",
    "portal.approvals",
    "keys_app",
    "access_app",
    "dr_app",
    "cmk_app",
    "compliance_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.RequestIdMiddleware",
    "portal.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "portal.accounts.middleware.SessionIdleTimeoutMiddleware",
    "portal.accounts.stepup.StepUpMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
            ],
            "builtins": ["portal.templatetags.cells"],
        },
    },
]

if env_str("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL"), conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "portal.sqlite3",
            # IMMEDIATE takes the write lock at BEGIN, so concurrent audit writers queue
            # instead of failing half-way; the timeout is how long they queue.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
# The role that owns the tables: `migrate` and `audit_db_roles` connect with it, while
# DATABASE_URL's role (the runtime) may only INSERT and SELECT audit rows. Unset: one role.
DATABASE_OWNER_URL = env_secret("DATABASE_OWNER_URL")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sign-in as Django's ModelBackend; permissions come from the portal roles (one query).
AUTHENTICATION_BACKENDS = ["portal.permissions.RoleBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Security headers. TLS terminates at the load balancer or nginx in production
# (PORTAL_HTTPS=true); the embedded `make run` serves plain HTTP on 127.0.0.1 only.
PORTAL_HTTPS = env_bool("PORTAL_HTTPS", False)
SECURE_SSL_REDIRECT = PORTAL_HTTPS
SECURE_HSTS_SECONDS = 31536000 if PORTAL_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = PORTAL_HTTPS
SECURE_HSTS_PRELOAD = PORTAL_HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PORTAL_HTTPS else None
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Lax, not Strict: the sign-in comes back from Entra ID (another site) as a top-level GET,
# which must carry the session holding the sign-in flow's state.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Cookies are Secure and named __Host- (no Domain, path /) everywhere, plain-HTTP
# localhost included (browsers treat http://localhost and 127.0.0.1 as secure for
# cookies). PORTAL_INSECURE_LOCAL_COOKIES=true drops both, for a local client that
# refuses Secure cookies over HTTP; never set it in production.
PORTAL_INSECURE_LOCAL_COOKIES = env_bool("PORTAL_INSECURE_LOCAL_COOKIES", False)
if PORTAL_INSECURE_LOCAL_COOKIES and PORTAL_HTTPS:
    raise ValueError("PORTAL_INSECURE_LOCAL_COOKIES cannot be set with PORTAL_HTTPS.")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not PORTAL_INSECURE_LOCAL_COOKIES
SESSION_COOKIE_NAME = "__Host-portal_session" if SESSION_COOKIE_SECURE else "portal_session"
CSRF_COOKIE_NAME = "__Host-portal_csrf" if CSRF_COOKIE_SECURE else "portal_csrf"
SESSION_COOKIE_AGE = env_int("PORTAL_SESSION_SECONDS", 8 * 3600)
# Proxies (addresses or networks) whose X-Forwarded-For names the client, for sign-in
# throttling by address; gunicorn itself never rewrites REMOTE_ADDR from that header.
PORTAL_TRUSTED_PROXIES = env_list("PORTAL_TRUSTED_PROXIES", [])
# A signed-in browser is signed out after this long without a request it made itself
# (job-progress polling does not count), and after SESSION_COOKIE_AGE in any case.
PORTAL_SESSION_IDLE_SECONDS = env_int("PORTAL_SESSION_IDLE_SECONDS", 30 * 60)
if not 60 <= PORTAL_SESSION_IDLE_SECONDS <= SESSION_COOKIE_AGE:
    raise ValueError("PORTAL_SESSION_IDLE_SECONDS must be from 60 to PORTAL_SESSION_SECONDS.")
# Email (approval requests tell approvers): Django's SMTP backend when EMAIL_HOST is set,
# otherwise none is sent (the inbox and its count in the navigation still show them).
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "mhsm-portal@localhost")
EMAIL_BACKEND = ("django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                 else "django.core.mail.backends.dummy.EmailBackend")
# This portal's address as people reach it, for links in emails (e.g. https://portal.internal).
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL").rstrip("/")

# Step-up: purge, full restore, security-domain upload and role grants at scope "/" need a
# sign-in within this many seconds (portal/accounts/stepup.py).
PORTAL_STEP_UP_SECONDS = env_int("PORTAL_STEP_UP_SECONDS", 15 * 60)
if not 60 <= PORTAL_STEP_UP_SECONDS <= 3600:
    raise ValueError("PORTAL_STEP_UP_SECONDS must be from 60 to 3600.")
# Privileged roles (admin, approver) sign out sooner: after this long idle, and this long
# after sign-in (each at most the general value above).
PORTAL_PRIVILEGED_IDLE_SECONDS = env_int("PORTAL_PRIVILEGED_IDLE_SECONDS", 15 * 60)
PORTAL_PRIVILEGED_SESSION_SECONDS = env_int("PORTAL_PRIVILEGED_SESSION_SECONDS", 12 * 3600)
if not 60 <= PORTAL_PRIVILEGED_IDLE_SECONDS <= PORTAL_PRIVILEGED_SESSION_SECONDS:
    raise ValueError("PORTAL_PRIVILEGED_IDLE_SECONDS must be from 60 to "
                     "PORTAL_PRIVILEGED_SESSION_SECONDS.")

# Sign-in with Microsoft Entra ID (portal/accounts/entra.py): on when ENTRA_CLIENT_ID is
# set. The authority is https://login.microsoftonline.com/<tenant id> in production; the
# client authenticates with a secret or a certificate (PEM with its private key).
ENTRA_AUTHORITY = env_str("ENTRA_AUTHORITY").rstrip("/")
ENTRA_CLIENT_ID = env_str("ENTRA_CLIENT_ID")
ENTRA_CLIENT_SECRET = env_secret("ENTRA_CLIENT_SECRET")
ENTRA_CLIENT_CERTIFICATE = env_str("ENTRA_CLIENT_CERTIFICATE")
ENTRA_CLIENT_CERTIFICATE_THUMBPRINT = env_str("ENTRA_CLIENT_CERTIFICATE_THUMBPRINT")
if ENTRA_CLIENT_CERTIFICATE and not ENTRA_CLIENT_CERTIFICATE_THUMBPRINT:
    raise ValueError("ENTRA_CLIENT_CERTIFICATE needs ENTRA_CLIENT_CERTIFICATE_THUMBPRINT.")
# The redirect URI registered for the app; unset: this portal's /accounts/entra/callback/.
ENTRA_REDIRECT_URI = env_str("ENTRA_REDIRECT_URI")
# App role value (or group object id) -> portal role.
def _role_map(name: str, default: list[str]) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in env_list(name, default)]
    bad = [pair for pair in pairs
           if len(pair) != 2 or pair[1].strip() not in ("admin", "approver", "auditor")]
    if bad:
        raise ValueError(f"{name} entries are <value>=<admin|approver|auditor>, "
                         f"comma-separated; not {'='.join(bad[0])!r}.")
    return {key.strip(): value.strip() for key, value in pairs}


ENTRA_ROLE_MAP = _role_map("ENTRA_ROLE_MAP", ["admin=admin", "approver=approver",
                                              "auditor=auditor"])
ENTRA_GROUP_MAP = _role_map("ENTRA_GROUP_MAP", [])
# Bearer tokens for the API: the audience (the portal API's app id URI) and the issuers
# accepted (unset: the authority's v2.0 issuer and the v1 sts.windows.net one).
ENTRA_API_AUDIENCE = env_str("ENTRA_API_AUDIENCE")
# CA bundle for the authority's TLS (the emulator's CA for `make run`; unset: system CAs).
ENTRA_CA_BUNDLE = env_str("ENTRA_CA_BUNDLE")
# Local accounts with passwords, for break-glass only: off unless PORTAL_BREAK_GLASS=true.
PORTAL_BREAK_GLASS = env_bool("PORTAL_BREAK_GLASS", False)
# API tokens expire this many days after they are issued.
PORTAL_API_TOKEN_DAYS = env_int("PORTAL_API_TOKEN_DAYS", 90)
if not 1 <= PORTAL_API_TOKEN_DAYS <= 365:
    raise ValueError("PORTAL_API_TOKEN_DAYS must be from 1 to 365.")
CSRF_COOKIE_HTTPONLY = True

# Request size. One bound for JSON bodies and form fields (Django's own limit) and for
# uploaded files (portal.uploads). The largest legitimate bodies are key backups: about
# 5 KiB per RSA-4096 version, so 2 MiB holds hundreds of versions even base64 in JSON.
# Larger requests are answered 413.
PORTAL_MAX_BODY_BYTES = env_int("PORTAL_MAX_BODY_BYTES", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PORTAL_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = PORTAL_MAX_BODY_BYTES
FILE_UPLOAD_HANDLERS = ["portal.uploads.BoundedUploadHandler",
                        "django.core.files.uploadhandler.MemoryFileUploadHandler",
                        "django.core.files.uploadhandler.TemporaryFileUploadHandler"]

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

REST_FRAMEWORK = {
    # Token first: an unauthenticated API call gets 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.accounts.authentication.ApiTokenAuthentication",
        "portal.accounts.authentication.EntraBearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.permissions.HasRequiredPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "portal.api_schema.PortalAutoSchema",
    "EXCEPTION_HANDLER": "portal.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mhsm-portal API",
    "DESCRIPTION": "Self-service Azure Managed HSM administration inside the private network.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Both lists of a custom role definition take the same Managed HSM data actions.
    "ENUM_NAME_OVERRIDES": {"DataActionEnum": "access_app.api.serializers.DATA_ACTION_CHOICES"},
}

# Celery. Without CELERY_BROKER_URL the embedded default is kombu's filesystem
# transport: real workers and beat, no broker server to run.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_broker_dir = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem"):
    for _folder in ("processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir), "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"), "store_processed": False,
        "control_folder": str(_broker_dir / "control")}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE: dict = {
    "inventory-sync": {"task": "keys_app.tasks.inventory_sync_all",
                       "schedule": env_int("PORTAL_INVENTORY_SYNC_SECONDS", 300)},
    # Open approval requests past their lifetime become "expired" (audited).
    "approvals-expire": {"task": "portal.approvals.tasks.approval_expire_due",
                         "schedule": 300},
    # dr_app: due backup schedules, retention, and resuming jobs whose worker died.
    "dr-tick": {"task": "dr_app.tasks.dr_tick", "schedule": 60},
    # access_app: expired grants leave the HSM within one interval; ended reviews close.
    "access-housekeeping": {"task": "access_app.tasks.access_housekeeping",
                            "schedule": env_int("ACCESS_BEAT_SECONDS", 60)},
    "access-rbac-sync": {"task": "access_app.tasks.rbac_sync_all",
                         "schedule": env_int("ACCESS_SYNC_SECONDS", 300)},
}
# dr_app security domain: jobs whose worker died are resumed, expired files deleted.
CELERY_BEAT_SCHEDULE["security-domain-housekeeping"] = {
    "task": "dr_app.security_domain_tasks.security_domain_housekeeping", "schedule": 300}
# cmk_app: which resources use which key (and version), read from Resource Manager.
CELERY_BEAT_SCHEDULE["cmk-usage-scan"] = {"task": "cmk_app.tasks.cmk_usage_scan",
                                          "schedule": env_int("CMK_SCAN_SECONDS", 600)}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Azure. AZURE_CREDENTIAL: "default" (DefaultAzureCredential: managed identity in
# production) or "client_secret" (a service principal, which is how the emulator is reached).
AZURE_CREDENTIAL = env_str("AZURE_CREDENTIAL", "default")
AZURE_TENANT_ID = env_str("AZURE_TENANT_ID")
AZURE_CLIENT_ID = env_str("AZURE_CLIENT_ID")
AZURE_CLIENT_SECRET = env_secret("AZURE_CLIENT_SECRET")
AZURE_AUTHORITY_HOST = env_str("AZURE_AUTHORITY_HOST")
AZURE_CA_BUNDLE = env_str("AZURE_CA_BUNDLE")
# Microsoft Graph, for directory look-ups (names beside object ids, principal search):
# https://graph.microsoft.us etc. in other clouds, the emulator's "graph" address in make run.
AZURE_GRAPH_URL = env_str("AZURE_GRAPH_URL", "https://graph.microsoft.com")
# HSM URLs must be https://<name>.<AZURE_HSM_DNS_SUFFIX> (managedhsm.usgovcloudapi.net,
# managedhsm.azure.cn in sovereign clouds), or a host:port named in HSM_EMULATOR_HOSTS;
# only the named emulator hosts skip the SDK's challenge-resource check.
AZURE_HSM_DNS_SUFFIX = env_str("AZURE_HSM_DNS_SUFFIX", "managedhsm.azure.net")
HSM_EMULATOR_HOSTS = env_list("HSM_EMULATOR_HOSTS", [])
AZURE_RETRY_TOTAL = env_int("AZURE_RETRY_TOTAL", 3)
# Azure Resource Manager (cmk_app: CMK on storage and databases, the HSM resource page):
# its address and the token scope for it (the emulator's "arm" address in make run/tests).
AZURE_RESOURCE_MANAGER_URL = env_str("AZURE_RESOURCE_MANAGER_URL", "https://management.azure.com")
AZURE_RESOURCE_MANAGER_SCOPE = env_str("AZURE_RESOURCE_MANAGER_SCOPE",
                                       "https://management.azure.com/.default")
# cmk_app: how often the beat scan reads every CMK consumer's encryption (seconds).
CMK_SCAN_SECONDS = env_int("CMK_SCAN_SECONDS", 600)
# Backup storage (dr_app): the blob endpoint of the account holding full backups (path-style
# for Azurite: https://127.0.0.1:<port>/<account>), its name, and its key (without a key the
# portal's credential lists blobs and signs user-delegation SAS tokens).
AZURE_STORAGE_BLOB_ENDPOINT = env_str("AZURE_STORAGE_BLOB_ENDPOINT")
AZURE_STORAGE_ACCOUNT_NAME = env_str("AZURE_STORAGE_ACCOUNT_NAME")
AZURE_STORAGE_ACCOUNT_KEY = env_secret("AZURE_STORAGE_ACCOUNT_KEY")
DR_BACKUP_CONTAINER = env_str("DR_BACKUP_CONTAINER", "mhsm-backups")
# Audit (portal.audit): where the HSMs' own AuditEvents are read from ("storage": the account
# a diagnostic setting writes insights-logs-auditevent to, by default the backup account;
# "log_analytics": the workspace's AzureDiagnostics through azure-monitor-query), how often,
# the HSM key that signs chain checkpoints, and how long audit rows are kept (>= 180 days).
HSM_AUDIT_SOURCE = env_str("HSM_AUDIT_SOURCE", "storage")
if HSM_AUDIT_SOURCE not in ("storage", "log_analytics"):
    raise ImproperlyConfigured("HSM_AUDIT_SOURCE must be 'storage' or 'log_analytics'.")
HSM_AUDIT_WORKSPACE_ID = env_str("HSM_AUDIT_WORKSPACE_ID")
HSM_AUDIT_LOGS_ENDPOINT = env_str("HSM_AUDIT_LOGS_ENDPOINT")
HSM_AUDIT_STORAGE_BLOB_ENDPOINT = env_str("HSM_AUDIT_STORAGE_BLOB_ENDPOINT")
HSM_AUDIT_STORAGE_ACCOUNT_NAME = env_str("HSM_AUDIT_STORAGE_ACCOUNT_NAME")
HSM_AUDIT_STORAGE_ACCOUNT_KEY = env_secret("HSM_AUDIT_STORAGE_ACCOUNT_KEY")
HSM_AUDIT_INGEST_SECONDS = min(max(env_int("HSM_AUDIT_INGEST_SECONDS", 60), 10), 3600)
AUDIT_CHECKPOINT_HSM = env_str("AUDIT_CHECKPOINT_HSM")
AUDIT_CHECKPOINT_KEY = env_str("AUDIT_CHECKPOINT_KEY", "portal-audit-checkpoint")
AUDIT_CHECKPOINT_CONTAINER = env_str("AUDIT_CHECKPOINT_CONTAINER", "audit-checkpoints")
AUDIT_CHECKPOINT_SECONDS = min(max(env_int("AUDIT_CHECKPOINT_SECONDS", 3600), 60), 86400)
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 365)
if not 180 <= AUDIT_RETENTION_DAYS <= 36500:
    raise ImproperlyConfigured("AUDIT_RETENTION_DAYS must be between 180 and 36500 days.")
CELERY_BEAT_SCHEDULE["hsm-audit-ingest"] = {"task": "portal.audit.tasks.hsm_audit_ingest",
                                            "schedule": HSM_AUDIT_INGEST_SECONDS}
CELERY_BEAT_SCHEDULE["audit-checkpoint"] = {"task": "portal.audit.tasks.audit_checkpoint",
                                            "schedule": AUDIT_CHECKPOINT_SECONDS}
CELERY_BEAT_SCHEDULE["audit-retention"] = {"task": "portal.audit.tasks.audit_retention_purge",
                                           "schedule": 86400}

DR_SAS_MINUTES = env_int("DR_SAS_MINUTES", 120)
DR_JOB_LEASE_SECONDS = env_int("DR_JOB_LEASE_SECONDS", 120)
DR_JOB_STUCK_HOURS = env_int("DR_JOB_STUCK_HOURS", 2)
DR_SLOT_WAIT_SECONDS = env_int("DR_SLOT_WAIT_SECONDS", 3600)

# Local RBAC: the longest time-boxed grant an access request may ask for (hours).
ACCESS_MAX_DURATION_HOURS = env_int("ACCESS_MAX_DURATION_HOURS", 72)
if not 1 <= ACCESS_MAX_DURATION_HOURS <= 8760:
    raise ValueError("ACCESS_MAX_DURATION_HOURS must be from 1 to 8760.")

# Key standards as code (types, sizes, curves, tags, names, lifetime, default rotation).
KEY_STANDARDS_FILE = env_str("PORTAL_KEY_STANDARDS_FILE", str(BASE_DIR / "keys_app" / "standards.yaml"))

# Security domain (dr_app). A custodian who has not proven custody of their key within
# PORTAL_CUSTODY_PROOF_DAYS is a warning; a security domain (downloaded at activation, or
# uploaded for a recovery) waits encrypted under PORTAL_VAR_DIR at most PORTAL_SD_FILE_SECONDS;
# a job waits PORTAL_SD_POLL_SECONDS for the HSM to finish activating or restoring.
PORTAL_CUSTODY_PROOF_DAYS = env_int("PORTAL_CUSTODY_PROOF_DAYS", 180)
if not 1 <= PORTAL_CUSTODY_PROOF_DAYS <= 3650:
    raise ValueError("PORTAL_CUSTODY_PROOF_DAYS must be from 1 to 3650.")
PORTAL_SD_FILE_SECONDS = env_int("PORTAL_SD_FILE_SECONDS", 24 * 3600)
if not 300 <= PORTAL_SD_FILE_SECONDS <= 7 * 24 * 3600:
    raise ValueError("PORTAL_SD_FILE_SECONDS must be from 300 to 604800.")
PORTAL_SD_POLL_SECONDS = env_int("PORTAL_SD_POLL_SECONDS", 240)
if not 10 <= PORTAL_SD_POLL_SECONDS <= 3600:
    raise ValueError("PORTAL_SD_POLL_SECONDS must be from 10 to 3600.")

# compliance_app: posture checks on a schedule, the DR drill age they accept, and the regions
# an HSM, its replicas and the backup storage account may be in (comma-separated Azure
# region names, e.g. "centralindia,southindia"; empty: the residency check is not applicable).
POSTURE_RUN_SECONDS = min(max(env_int("POSTURE_RUN_SECONDS", 3600), 300), 86400)
POSTURE_DRILL_MAX_DAYS = env_int("POSTURE_DRILL_MAX_DAYS", 180)
if not 1 <= POSTURE_DRILL_MAX_DAYS <= 3650:
    raise ImproperlyConfigured("POSTURE_DRILL_MAX_DAYS must be from 1 to 3650.")
PORTAL_ALLOWED_REGIONS = env_list("PORTAL_ALLOWED_REGIONS", [])
CELERY_BEAT_SCHEDULE["posture-run"] = {"task": "compliance_app.tasks.posture_run_scheduled",
                                       "schedule": POSTURE_RUN_SECONDS}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "portal.audit.redaction.RedactingFilter"},
                # A 403 or an oversized body is one line, not a traceback.
                "client_errors": {"()": "portal.errors.ClientErrorTracebackFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
                   # Celery's task loggers: the same line plus the task's name and id.
                   "task": {"()": "celery.app.log.TaskFormatter",
                            "fmt": "%(asctime)s %(levelname)s %(name)s "
                                   "%(task_name)s[%(task_id)s] %(message)s",
                            "use_color": False}},
    "handlers": {
        "task_console": {"class": "logging.StreamHandler", "formatter": "task",
                         "filters": ["redact"]},
        "console": {"class": "logging.StreamHandler", "formatter": "plain",
                    "filters": ["client_errors", "redact"]},
    },
    "root": {"handlers": ["console"], "level": env_str("PORTAL_LOG_LEVEL", "INFO")},
    "loggers": {
        # The SDK's HTTP logging prints headers and URLs (which can carry SAS tokens).
        "azure": {"level": "WARNING"},
        # get_task_logger() loggers hang below this one (worker, beat, or a task's .apply()).
        "celery.task": {"handlers": ["task_console"], "propagate": False},
    },
}
