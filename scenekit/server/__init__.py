"""`scenekit serve`: the engine over HTTP (FastAPI), a render queue kept in SQLite, and a page to watch renders."""
