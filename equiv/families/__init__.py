"""One module per mechanism family: its forms, derived bounds, claims and report sweeps."""
