from tests.support.stripe_standin.pytest_plugin import (  # noqa: F401
    stripe_standin,
    stripe_standin_server,
)
