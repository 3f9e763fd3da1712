"""Evaluation of a trained model (closed loop in the simulator comes with the simulator)."""
