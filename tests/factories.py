"""Users in each portal role, and other rows tests need."""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from portal.permissions import sync_roles

PASSWORD = "correct-horse-battery-staple"


def user_in_role(username: str, role: str | None):
    """A user with the given portal role (None: signed in but no role)."""
    sync_roles()
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user
