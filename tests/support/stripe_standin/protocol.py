"""What the runner and its test-side handle agree on."""

# The runner prints "<READY_PREFIX> <base url>" on stdout once it listens.
READY_PREFIX = "STRIPE_STANDIN_READY"
