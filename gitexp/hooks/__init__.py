"""Git hooks gitexp installs (the pre-push disk-space check belongs here; not built yet)."""
