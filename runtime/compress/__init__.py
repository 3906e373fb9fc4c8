"""Turn checkpoints into GGUF and GGUF into smaller GGUF: converter, quantizer, size estimates."""
