"""Augmentations applied while planning samples: context dropping and class balancing."""
