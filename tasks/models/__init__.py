"""Tiny random-weight models (BERT for CheXbert, Llama for generation and training) built locally
for the demo and the tests, so nothing is downloaded."""
