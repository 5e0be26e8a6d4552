"""Local emulator of the Azure Managed HSM data plane and its identity authority.

It serves, over HTTPS with its own CA, an OAuth2/OpenID token authority and one
Managed HSM data-plane endpoint per emulated HSM, faithful enough that the unmodified
official Azure SDK clients (azure-identity, azure-keyvault-keys,
azure-keyvault-administration) work against it. Run it with ``python -m hsm_emulator
serve``; see ``docs/emulator.md``. This package never imports the portal.
"""

__version__ = "0.1.0"
