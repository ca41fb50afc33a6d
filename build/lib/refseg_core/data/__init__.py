"""Data: REFER / G-REFER loading, the synthetic dataset, letterboxing and the torch Dataset."""
