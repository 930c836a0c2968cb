"""The dashboard: one static page (HTML, CSS, ES modules) that talks to the JSON API."""
