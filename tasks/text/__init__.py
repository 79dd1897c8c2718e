"""Text utilities shared by the stages: sentence splitting and list joining."""
