"""Translation of Azure SDK errors into PortalError subclasses with sentences people can act on."""
from contextlib import contextmanager

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                   ServiceRequestError, ServiceResponseError)

from portal.errors import BadInput, Conflict, HsmUnavailable, NotAllowed, NotFound, PortalError, \
    Throttled


def _service_message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or exc.reason or "The HSM refused the request."
    # The service appends "(Activity ID: ...)" and sometimes CR/LF: keep the sentence.
    return message.split(" (Activity ID")[0].replace("\r", " ").replace("\n", " ").strip()


def _service_code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    return getattr(error, "code", None) or ""


def error_for_status(status: int | None, exc: HttpResponseError) -> PortalError:
    """The PortalError for an HTTP failure from Azure."""
    message, code = _service_message(exc), _service_code(exc)
    if status == 404:
        return NotFound(message, code=code or "not_found")
    if status == 409:
        return Conflict(message, code=code or "conflict")
    if status == 403:
        return NotAllowed(f"The HSM refused this: {message}", code=code or "forbidden")
    if status == 401:
        return HsmUnavailable("The portal could not authenticate to the HSM; check its "
                              "identity and the HSM's role assignments.", code="hsm_auth_failed")
    if status == 429:
        return Throttled("The HSM is throttling requests; try again shortly.")
    if status is not None and 400 <= status < 500:
        return BadInput(message, code=code or "bad_input")
    return HsmUnavailable(f"The HSM is unavailable ({status}): {message}")


@contextmanager
def translated_errors():
    """Turn azure.core exceptions into PortalError subclasses for the caller."""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise error_for_status(401, exc) from exc
    except HttpResponseError as exc:  # includes ResourceNotFoundError (404)
        raise error_for_status(exc.status_code, exc) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise HsmUnavailable("The HSM could not be reached from the portal's network.") from exc
