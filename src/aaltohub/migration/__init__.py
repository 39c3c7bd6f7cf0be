"""Moving a hub to aaltohub from another deployment (read-only reports)."""
