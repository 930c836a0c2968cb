"""Sign-in rules: which verified identities we accept and whom they become."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.errors import AppError, ForbiddenError
from accessai.observability.logging import get_logger
from accessai.users import service as users
from accessai.users.models import User

log = get_logger("accessai.auth")

_MAX_EMAIL_LENGTH = 320
_MAX_NAME_LENGTH = 200
_MAX_SUBJECT_LENGTH = 255


class EmailNotVerifiedError(ForbiddenError):
    code = "email_not_verified"

    def __init__(self) -> None:
        super().__init__(
            "The identity provider has not verified this account's email address; "
            "verify it there and sign in again."
        )


class UnusableIdentityError(AppError):
    """The ID token verified, but lacks what we need to make an account."""

    status_code = 502
    code = "identity_provider_error"


@dataclass(frozen=True, slots=True)
class GoogleIdentity:
    subject: str
    email: str
    name: str | None


def identity_from_claims(claims: Mapping[str, Any]) -> GoogleIdentity:
    """Accept a verified ID token's claims only with a verified email address."""
    subject = claims.get("sub")
    email = claims.get("email")
    if not isinstance(subject, str) or not 0 < len(subject) <= _MAX_SUBJECT_LENGTH:
        raise UnusableIdentityError("The ID token has no usable subject.")
    if not isinstance(email, str) or "@" not in email or len(email) > _MAX_EMAIL_LENGTH:
        raise UnusableIdentityError(
            "The ID token has no email address; the 'email' scope must be granted."
        )
    # Google sends a boolean; some providers send the string "true".
    if claims.get("email_verified") not in (True, "true"):
        raise EmailNotVerifiedError()
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        name = None
    else:
        name = name.strip()[:_MAX_NAME_LENGTH]
    return GoogleIdentity(subject=subject, email=email, name=name)


async def sign_in(
    session: AsyncSession, identity: GoogleIdentity, *, signup_bonus: int
) -> tuple[User, bool]:
    """The user for this identity, created (with the signup bonus) on first sign-in."""
    user, created = await users.get_or_create_user_by_google_id(
        session,
        google_id=identity.subject,
        email=identity.email,
        name=identity.name,
        signup_bonus=signup_bonus,
    )
    log.info("auth.signed_in", user_id=str(user.id), created=created)
    return user, created
