"""Framework backends: each adapts one framework to limelight.Model and imports it lazily."""
