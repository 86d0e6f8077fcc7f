"""limelight's framework-free core: imports NumPy and pluggy only, never a framework."""
