"""Proving who a caller is: Google sign-in, access tokens' companion API keys."""
