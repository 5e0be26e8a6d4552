"""gunicorn settings for the portal (override any with GUNICORN_CMD_ARGS)."""
import os

bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("PORTAL_WEB_WORKERS", "2"))
threads = int(os.environ.get("PORTAL_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 20
accesslog = "-"
# The access log records paths and status only; query strings could carry filters, not secrets,
# but never log headers (Authorization).
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'
forwarded_allow_ips = os.environ.get("PORTAL_FORWARDED_ALLOW_IPS", "127.0.0.1")
# No control socket: nothing uses it, and its default place ($HOME/.gunicorn) is shared by
# every gunicorn of the user (two portals on one machine would take each other's).
control_socket_disable = True
