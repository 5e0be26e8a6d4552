"""The directory behind the authority: users, groups and app-role assignments.

Entra keeps, beside applications and their service principals (``tokens.Principal``):

- **users**: object id, user principal name, display name, a password (kept as a scrypt
  hash; the emulator signs users in with it on its sign-in page), group memberships;
- **groups**: object id and display name (a user's ``groups`` claim lists their ids);
- **app-role assignments**: which of an application's app roles (``admin``, ``approver``,
  ...) a user or a service principal holds. ID tokens for an application carry the
  signed-in user's roles on it in ``roles``; client-credentials tokens for an
  application's API carry the calling service principal's roles on that API.

Everything persists in the state store unless the emulator runs ephemeral. The HTTP
controls that create these objects live in ``tokens.Authority``; the Graph endpoint
(``graph.py``) reads them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .state import Store

_SCOPE = "identity"
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MAX_NAME = 256


class DirectoryError(ValueError):
    """A control request the directory refuses: ``status`` and a sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class User:
    """A member user of the tenant."""

    object_id: str
    user_principal_name: str
    display_name: str
    password_hash: str
    groups: list[str] = field(default_factory=list)

    def public(self) -> dict:
        """The user without the password hash."""
        return {"object_id": self.object_id, "user_principal_name": self.user_principal_name,
                "display_name": self.display_name, "groups": list(self.groups)}

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is this user's password (constant-time comparison)."""
        salt_b64, _, digest_b64 = self.password_hash.partition("$")
        digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), **_SCRYPT)
        return hmac.compare_digest(digest, base64.b64decode(digest_b64))


@dataclass
class Group:
    """A security group."""

    object_id: str
    display_name: str

    def public(self) -> dict:
        """The group as the controls return it."""
        return {"object_id": self.object_id, "display_name": self.display_name}


def _hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def new_password() -> str:
    """A random password for a user created without one (returned once)."""
    return secrets.token_urlsafe(18)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DirectoryError(400, f"{what} (a non-empty string) is required")
    value = value.strip()
    if len(value) > MAX_NAME:
        raise DirectoryError(400, f"{what} is longer than {MAX_NAME} characters")
    return value


class Directory:
    """Users, groups and app-role assignments of the emulator's tenant."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.users: dict[str, User] = {}
        self.groups: dict[str, Group] = {}
        # assignee object id -> resource application (client) id -> role values
        self.assignments: dict[str, dict[str, list[str]]] = {}
        for oid, doc in store.load(_SCOPE, "user").items():
            self.users[oid] = User(oid, doc["upn"], doc["display_name"], doc["password_hash"],
                                   list(doc.get("groups", [])))
        for oid, doc in store.load(_SCOPE, "group").items():
            self.groups[oid] = Group(oid, doc["display_name"])
        for oid, doc in store.load(_SCOPE, "assignment").items():
            self.assignments[oid] = {app: list(values) for app, values in doc.items()}
        # Checked instead of a user that does not exist, so both cost one scrypt.
        self.decoy = User("", "", "", _hash_password(new_password()))

    # -- users and groups ---------------------------------------------------------

    def user_by_upn(self, upn: str) -> Optional[User]:
        """The user with this user principal name (case-insensitive), or None."""
        wanted = upn.strip().lower()
        return next((u for u in self.users.values() if u.user_principal_name.lower() == wanted), None)

    def create_user(self, upn: object, display_name: object = None, password: object = None,
                    groups: Iterable[str] = ()) -> tuple[User, str]:
        """A new user and its password (generated when not given)."""
        upn = _name(upn, "user_principal_name")
        if "@" not in upn or upn.startswith("@") or upn.endswith("@") or " " in upn:
            raise DirectoryError(400, "user_principal_name must look like name@domain")
        if self.user_by_upn(upn) is not None:
            raise DirectoryError(409, f"A user with user_principal_name {upn} already exists")
        display = _name(display_name, "display_name") if display_name is not None else upn.split("@")[0]
        if password is None:
            password = new_password()
        elif not isinstance(password, str) or not 8 <= len(password) <= 256:
            raise DirectoryError(400, "password must be a string of 8 to 256 characters")
        group_ids = self._group_ids(groups)
        user = User(str(uuid.uuid4()), upn, display, _hash_password(password), group_ids)
        self.users[user.object_id] = user
        self._save_user(user)
        return user, password

    def _save_user(self, user: User) -> None:
        self._store.put(_SCOPE, "user", user.object_id, {
            "upn": user.user_principal_name, "display_name": user.display_name,
            "password_hash": user.password_hash, "groups": user.groups,
        })

    def _group_ids(self, groups: Iterable[str]) -> list[str]:
        if isinstance(groups, str) or not all(isinstance(g, str) for g in groups):
            raise DirectoryError(400, "groups must be a list of group object ids")
        unknown = [g for g in groups if g not in self.groups]
        if unknown:
            raise DirectoryError(400, f"No group with object id {unknown[0]}")
        return list(dict.fromkeys(groups))

    def create_group(self, display_name: object, members: Iterable[str] = ()) -> Group:
        """A new security group, with users as members."""
        group = Group(str(uuid.uuid4()), _name(display_name, "display_name"))
        if isinstance(members, str) or not all(isinstance(m, str) for m in members):
            raise DirectoryError(400, "members must be a list of user object ids")
        missing = [m for m in members if m not in self.users]
        if missing:
            raise DirectoryError(400, f"No user with object id {missing[0]}")
        self.groups[group.object_id] = group
        self._store.put(_SCOPE, "group", group.object_id, {"display_name": group.display_name})
        for oid in members:
            user = self.users[oid]
            if group.object_id not in user.groups:
                user.groups.append(group.object_id)
                self._save_user(user)
        return group

    # -- app-role assignments -----------------------------------------------------

    def roles_of(self, object_id: str, app_client_id: str) -> list[str]:
        """The app roles (values) ``object_id`` holds on the application ``app_client_id``."""
        return list(self.assignments.get(object_id, {}).get(app_client_id, []))

    def assign(self, object_id: str, app_client_id: str, role: str) -> list[str]:
        """Give ``object_id`` the app role ``role`` of ``app_client_id``; its roles there."""
        roles = self.assignments.setdefault(object_id, {}).setdefault(app_client_id, [])
        if role not in roles:
            roles.append(role)
            self._store.put(_SCOPE, "assignment", object_id, self.assignments[object_id])
        return list(roles)

    def unassign(self, object_id: str, app_client_id: str, role: str) -> list[str]:
        """Take the app role away; the roles that remain."""
        roles = self.assignments.get(object_id, {}).get(app_client_id, [])
        if role in roles:
            roles.remove(role)
            self._store.put(_SCOPE, "assignment", object_id, self.assignments[object_id])
        return list(roles)
