"""Managed HSM's built-in role definitions, by name, as the service publishes their ids."""

ROLE_IDS = {
    "Administrator": "a290e904-7015-4bba-90c8-60543313cdb4",
    "Crypto Officer": "515eb02d-2335-4d2d-92f2-b1cbdf9c3778",
    "Crypto User": "21dbd100-6940-42c2-9190-5d6cb909625b",
    "Crypto Auditor": "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3",
    "Crypto Service Encryption User": "33413926-3206-4cdd-b39a-83574fe37a17",
}
DEFINITION_PREFIX = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
