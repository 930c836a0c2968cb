pytest_plugins = ["tests.support.openai_fixtures"]
