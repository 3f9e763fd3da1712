"""trainer room."""
