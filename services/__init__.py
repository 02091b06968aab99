"""Event Manager services: each a small FastAPI app plus its worker loop."""
