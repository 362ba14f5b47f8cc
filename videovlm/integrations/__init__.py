"""Adapters that let other tools drive videovlm models (each imports its tool only when used):
``videovlm.integrations.lmms_eval`` is lmms-eval's ``--model videovlm``."""
