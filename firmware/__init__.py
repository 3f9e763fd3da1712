"""firmware room."""
