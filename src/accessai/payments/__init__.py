"""Buying credits with Stripe Checkout: packages, checkout, the signed webhook, history."""
