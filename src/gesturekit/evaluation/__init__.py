"""End-to-end evaluation of deployed models (any runtime backend) on original images."""
