"""The registry of approvable operations: one service per action, never silently replaced."""
import pytest

from portal.approvals import registry


def test_key_actions_are_registered_with_the_services_that_carry_them_out():
    from keys_app import services

    assert registry.registered("key.purge") is services.key_purge
    assert registry.registered("key.delete") is services.key_delete
    assert registry.registered("no.such.action") is None


def test_an_action_cannot_be_rebound_to_another_service():
    from keys_app import services

    registry.register("key.purge", services.key_purge)  # the same pair again is harmless
    with pytest.raises(ValueError, match="already registered"):
        registry.register("key.purge", services.key_delete)
