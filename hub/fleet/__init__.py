"""The fleet: signed model deployments, the model registry, training jobs and recorded sessions."""
