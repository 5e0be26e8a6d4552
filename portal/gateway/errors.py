"""Translation of Azure SDK errors into PortalError subclasses with sentences people can act on.

Messages name the HSM by its portal name and the key by its name. They never carry the
service's error codes (KeyNotFound, BadParameter...), its URLs or activity ids: those mean
nothing to the reader and disclose the HSM's internal address. Codes are the portal's
(`not_found`, `forbidden`, ...); the service's code is kept on the exception as
`service_code` for logs.
"""
import re
import threading
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                   ServiceRequestError, ServiceResponseError)

from portal.errors import BadInput, Conflict, HsmUnavailable, NotAllowed, NotFound, PortalError, \
    Throttled

_names_lock = threading.Lock()
_hsm_names: dict[str, str] = {}  # "https://host[:port]" -> portal name, filled by clients.py

_URL = re.compile(r"https?://[^\s'\"<>()]+", re.I)
_SDK_PREFIX = re.compile(r"^\((?:[A-Za-z]+)\)\s*")
_KEY_PATH = re.compile(r"^/(?P<kind>keys|deletedkeys)/(?P<name>[^/]+)(?P<rest>/.*)?$", re.I)


def remember_hsm(uri: str, name: str) -> None:
    """Note the portal name of the HSM at this URL (the gateway calls it when building clients)."""
    with _names_lock:
        _hsm_names[uri.rstrip("/").lower()] = name


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _request_url(exc: Exception) -> tuple[str, str]:
    response = getattr(exc, "response", None)
    request = getattr(response, "request", None)
    return (getattr(request, "url", "") or "", getattr(request, "method", "") or "")


def _hsm_label(url: str, hsm: str | None) -> str:
    if hsm:
        return f"HSM {hsm}"
    name = _hsm_names.get(_origin(url)) if url else None
    return f"HSM {name}" if name else "The HSM"


def _subject(url: str, method: str) -> tuple[str, str]:
    """(kind, name) of what the request was about: ("key"|"deleted key"|"", name)."""
    match = _KEY_PATH.match(urlsplit(url).path if url else "")
    if not match:
        return "", ""
    name = unquote(match["name"])
    if match["kind"].lower() == "deletedkeys":
        return "deleted key", name
    if name.lower() == "restore" and method.upper() == "POST" and not match["rest"]:
        return "", ""  # POST /keys/restore is the restore action, not a key
    return "key", name


def _service_message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    return getattr(error, "message", None) or exc.reason or ""


def _service_code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or ""
    inner = getattr(error, "innererror", None)
    inner_code = inner.get("code") if isinstance(inner, dict) else getattr(inner, "code", None)
    return f"{code}/{inner_code}" if inner_code else code


def _clean(message: str, subject: tuple[str, str]) -> str:
    """The service's sentence without activity ids, URLs, SDK code prefixes or line breaks."""
    message = message.split(" (Activity ID")[0].replace("\r", " ").replace("\n", " ")
    message = _SDK_PREFIX.sub("", message.strip())
    kind, name = subject

    def url_text(match: re.Match) -> str:
        found = _KEY_PATH.match(urlsplit(match.group(0)).path)
        if found:
            return f"key {unquote(found['name'])}"
        return f"{kind} {name}" if kind else "the HSM"

    message = _URL.sub(url_text, message)
    message = re.sub(r"\s+", " ", message).strip()
    if message and message[-1] not in ".!?":
        message += "."
    return message


def error_for_status(status: int | None, exc: HttpResponseError, *,
                     hsm: str | None = None) -> PortalError:
    """The PortalError for an HTTP failure from Azure, worded for people."""
    url, method = _request_url(exc)
    where = _hsm_label(url, hsm)
    the_hsm = where if where.startswith("HSM") else "the HSM"
    on = f"on {the_hsm}"
    subject = _subject(url, method)
    kind, name = subject
    cleaned = _clean(_service_message(exc), subject)
    service_code = _service_code(exc)
    if status == 404:
        if kind == "key":
            error = NotFound(f"Key {name} was not found {on}.")
        elif kind == "deleted key":
            error = NotFound(f"No deleted key named {name} is {on}.")
        else:
            error = NotFound(f"{where} did not find what was asked for.")
    elif status == 409:
        error = Conflict(cleaned or f"{where} refused this: it conflicts with the current "
                                    "state.")
    elif status == 403:
        if service_code.startswith("AccessDenied"):
            error = NotAllowed(f"{where} refused this: the portal's identity has no role there "
                               "that allows it (local RBAC). Ask an HSM administrator for a "
                               "role assignment.")
        else:
            error = NotAllowed(f"{where} refused this: {cleaned}" if cleaned
                               else f"{where} refused this.")
    elif status == 401:
        error = HsmUnavailable(f"The portal could not authenticate to {the_hsm}; check its "
                               "identity and the HSM's role assignments.", code="hsm_auth_failed")
    elif status == 429:
        error = Throttled(f"{where} is throttling requests; try again shortly.")
    elif status is not None and 400 <= status < 500:
        error = BadInput(f"{where} refused the request: {cleaned}" if cleaned
                         else f"{where} refused the request.")
    else:
        shown = f" (it answered {status})" if status else ""
        error = HsmUnavailable(f"{where} is unavailable{shown}; try again shortly.")
    error.service_code = service_code
    return error


@contextmanager
def translated_errors(*, hsm: str | None = None):
    """Turn azure.core exceptions into PortalError subclasses for the caller.

    `hsm` (the portal name) is only needed where the request's URL cannot say which HSM
    it was, e.g. a connection that never got an answer.
    """
    try:
        yield
    except ClientAuthenticationError as exc:
        raise error_for_status(401, exc, hsm=hsm) from exc
    except HttpResponseError as exc:  # includes ResourceNotFoundError (404)
        raise error_for_status(exc.status_code, exc, hsm=hsm) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        where = f"HSM {hsm}" if hsm else "The HSM"
        raise HsmUnavailable(f"{where} could not be reached from the portal's network.") from exc
