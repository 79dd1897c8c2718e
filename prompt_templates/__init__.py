"""Prompt templates (YAML data): one file per instruct task plus the conversation format.

Templates are data, versioned per file: a request's cache key includes its task's template
version and the rendered prompt, so editing one variant regenerates exactly the rows that use it.
"""
