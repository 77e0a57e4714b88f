"""Shared runtime used by every OncoHabitat service: settings, gRPC bootstrap, errors, codec, logging."""
