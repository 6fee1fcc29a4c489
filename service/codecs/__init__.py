"""Request payloads to arrays and back: images (Pillow) and tensors (JSON, base64, .npy)."""
