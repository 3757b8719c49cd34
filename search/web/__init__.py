"""The HTTP API and the upload-a-photo page: the FastAPI app, its request models, upload limits and static files."""
