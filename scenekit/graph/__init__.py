"""The render DAG: typed nodes with content keys."""
