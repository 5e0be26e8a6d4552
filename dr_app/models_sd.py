"""Security-domain models (custody ledger, recovery); owned by the security-domain area.

Imported by dr_app/models.py; define models here with `__all__` listing them.
"""
__all__: list[str] = []
