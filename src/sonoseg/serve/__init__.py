"""``sonoseg serve``: the authenticated REST API, its background worker and the web viewer."""
