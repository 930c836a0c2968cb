"""Protection at the HTTP edge: rate limits, body size, security headers, the docs page."""
