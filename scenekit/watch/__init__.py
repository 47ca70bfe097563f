"""`scenekit watch`: re-render on save."""
