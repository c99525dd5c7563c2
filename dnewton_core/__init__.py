"""dnewton_core: distributed Newton methods for deep neural networks."""
