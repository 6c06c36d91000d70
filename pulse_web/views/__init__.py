"""The dashboard's pages, one module per page (each a Flask blueprint)."""
