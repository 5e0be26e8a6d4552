"""The one gateway to Azure. Services import this package, never azure.* themselves."""
from portal.gateway.clients import (access_control, backup, credential, crypto, hsm_settings,
                                    keys, reset_clients)
from portal.gateway.errors import error_for_status, translated_errors


def key_exists(hsm, name: str) -> bool:
    """Whether a live key of that name exists (call inside translated_errors)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        keys(hsm).get_key(name)
    except ResourceNotFoundError:
        return False
    return True


def hsm_ping(hsm) -> None:
    """One cheap authenticated data-plane call; raises a PortalError if it fails."""
    with translated_errors(hsm=hsm.name):
        next(iter(keys(hsm).list_properties_of_keys(max_page_size=1).by_page()), None)


__all__ = ["access_control", "backup", "credential", "crypto", "error_for_status", "hsm_ping",
           "hsm_settings", "key_exists", "keys", "reset_clients", "translated_errors"]
