"""The simulator: DeepRacer-compatible tracks, car physics, a first-person camera and lidar."""
