"""Planning and executing renders."""
