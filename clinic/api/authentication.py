"""API tokens that respect the clinic's two-factor rule."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from clinic.two_factor import confirmed_device, requires_two_factor

SET_UP_TWO_FACTOR = (
    "Your clinic requires two-factor sign-in and you have not set it up, so this token no longer works. "
    "Sign in to the staff site (/admin/) to set up your authenticator app, then request a new token with its code."
)


class TwoFactorTokenAuthentication(TokenAuthentication):
    """DRF's token sign-in, refused (401) while the holder needs a second factor and has no confirmed device.

    Tokens are issued only with a code where the rule applies, but one issued
    before the clinic switched it on would otherwise keep working with no second
    factor ever.  Once the holder confirms a device, it works again.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        if requires_two_factor(user) and confirmed_device(user) is None:
            raise AuthenticationFailed(SET_UP_TWO_FACTOR)
        return user, token
