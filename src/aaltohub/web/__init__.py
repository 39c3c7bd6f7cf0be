"""The hub's own pages: quota warnings on the home and spawn pages."""
