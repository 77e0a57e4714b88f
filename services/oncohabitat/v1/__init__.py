"""Generated gRPC/protobuf stubs for package oncohabitat.v1 (do not edit)."""
